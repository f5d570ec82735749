"""How long a bundle needs to settle after another runtime ran, and what side_by_side's ``settle_ms`` changes:
every bundle of a deploy output at batch 1, alone, then side by side with blocks of 8, 32 and 128 calls and with
blocks of 8 after 50 and 100 ms of settling -> benchmarks/results/settle.json.

    mait-deploy deploy -o out && python -m benchmarks.settle out/bundles/litert-int8 out/bundles/openvino-int8 \\
        out/bundles/onnxruntime-int8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_result
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.profiling.side_by_side import side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    runners = {path.name: load_bundle(path) for path in args.bundles}
    calls = {}
    for name, runner in runners.items():
        runner.activate()
        x = np.random.default_rng(0).standard_normal((1, *runner.sample_shape)).astype(np.float32)
        calls[name] = lambda runner=runner, x=x: runner.run(x)
    alone = {}
    for name, call in calls.items():
        for _ in range(20):
            call()
        times = []
        for _ in range(300):
            started = time.perf_counter_ns()
            call()
            times.append(time.perf_counter_ns() - started)
        alone[name] = float(np.median(times)) / 1e6
    settings = [(8, 0.0), (32, 0.0), (128, 0.0), (8, 50.0), (8, 100.0)]
    runs = []
    for block, settle in settings:
        result = side_by_side(calls, rounds=args.rounds, block=block, settle_ms=settle)
        runs.append({"block": block, "settle_ms": settle, "median_ms": result.median_ms,
                     "vs_alone": {n: round(result.median_ms[n] / alone[n], 3) for n in calls}})
        print(f"block {block:3d} settle {settle:5.0f} ms: " + ", ".join(
            f"{n} {result.median_ms[n]:.3f} ms ({result.median_ms[n] / alone[n]:.2f}x alone)" for n in calls))
    path = write_result("settle", {"alone_median_ms": alone, "runs": runs, "rounds": args.rounds,
                                   "bundles": [str(p) for p in args.bundles]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
