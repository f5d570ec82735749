"""Soak: many inferences on the ONNX Runtime and OpenVINO runners with RSS sampled along the way; memory must stay
flat. Reports the least-squares slope of RSS (MB per 10,000 inferences) after the first tenth (warm-up).

    python -m benchmarks.soak [--inferences 100000] [--targets onnxruntime,openvino]  # -> benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import write_result
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.profiling.measure import rss_mb
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CompileOptions


def soak(bundle: Path, inferences: int, samples: int = 200) -> dict:
    every = max(1, inferences // samples)
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    images = np.random.default_rng(1).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    points = []
    started = time.perf_counter()
    with load_bundle(bundle) as runner:
        for i in range(inferences):
            # Alternate the two public paths a long-running app uses.
            if i % 2:
                runner.run(x)
            else:
                runner.predict(images)
            if i % every == 0:
                points.append((i, rss_mb()))
    seconds = time.perf_counter() - started
    steps, rss = np.array(points, dtype=np.float64).T
    keep = steps >= inferences * 0.1
    slope = float(np.polyfit(steps[keep], rss[keep], 1)[0]) * 10_000
    return {"bundle": bundle.name, "inferences": inferences, "seconds": round(seconds, 1),
            "rss_start_mb": float(rss[0]), "rss_end_mb": float(rss[-1]), "rss_max_mb": float(rss.max()),
            "slope_mb_per_10k": slope, "flat": abs(slope) < 0.5, "samples": [[int(s), float(r)] for s, r in points]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inferences", type=int, default=100_000)
    parser.add_argument("--targets", default="onnxruntime,openvino")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for target in args.targets.split(","):
            bundle = Path(folder) / f"{target}-int8"
            compile_model(None, target, CompileOptions(precision="int8"), bundle, evaluation=None)
            result = soak(bundle, args.inferences)
            print(f"{target}: {result['inferences']} inferences in {result['seconds']} s, RSS "
                  f"{result['rss_start_mb']:.0f} -> {result['rss_end_mb']:.0f} MB, slope "
                  f"{result['slope_mb_per_10k']:+.3f} MB/10k", flush=True)
            results.append(result)
    print(f"wrote {write_result('soak', {'results': results})}")


if __name__ == "__main__":
    main()
