"""OpenVINO INT8 against FP32 with its kernels capped to AVX2: the non-VNNI x86 half of the per-ISA table, natively.

Emulation (benchmarks/int8_isa.py) runs the AVX2 kernels bit for bit but cannot time them. OpenVINO's CPU plugin
can be told to dispatch as if the CPU had no more than AVX2: oneDNN reads ``ONEDNN_MAX_CPU_ISA`` and the plugin's
own kernels ``OV_CPU_MAX_ISA`` (both must be set, before the library loads, hence one child process per setting).
On this host that gives the kernels an AVX2-only CPU gets (the JSON lists the convolution and attention kernels'
names as the plugin reports them), run at native speed. It is not a Zen 3: caches, clocks and the AVX-512 host's
micro-architecture stay this machine's, so the figures are a kernel-choice measurement, not a device profile.

For each setting (no cap, AVX2 cap): top-1 of the FP32 and INT8 bundles on the same test images, and INT8 against
FP32 timed side by side (the product's method: blocks, settle time, reversed order) at batch 1 and 32.

    mait-deploy deploy -o out --targets openvino && python -m benchmarks.isa_cap out/bundles/openvino-fp32 \\
        out/bundles/openvino-int8 --count 10000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks._common import write_result
from mait_deploy.errors import failure_line

CAPS = {"none": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2"}}
KERNEL_NODES = ("Convolution", "MatMul", "FullyConnected", "ScaledDotProductAttention", "Subgraph")


def kernels(bundle: Path) -> dict[str, int]:
    """The plugin's own names for the kernels it dispatched (node type: exec type -> count), from one inference."""
    import numpy as np
    import openvino as ov

    from mait_deploy.device.manifest import read_manifest

    manifest = read_manifest(bundle)
    compiled = ov.Core().compile_model(str(bundle / manifest.artifact.path), "CPU",
                                       {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.infer({0: np.zeros(list(compiled.inputs[0].get_partial_shape().get_min_shape()), np.float32)})
    found = collections.Counter(f"{info.node_type}: {info.exec_type}" for info in request.profiling_info
                                if info.node_type in KERNEL_NODES)
    return dict(sorted(found.items()))


def measure(fp32: Path, int8: Path, count: int, rounds: int) -> dict:
    """In this process (whose cap the environment set): kernels, top-1 and side-by-side INT8/FP32 speed."""
    from mait_deploy.config import PreprocessConfig
    from mait_deploy.device.bundle import load_bundle
    from mait_deploy.device.data.sources import load_dataset
    from mait_deploy.device.profiling.isa import cpu_isa
    from mait_deploy.device.profiling.side_by_side import BUNDLE_SETTLE_MS, side_by_side

    runners = {"fp32": load_bundle(fp32), "int8": load_bundle(int8)}
    manifest = runners["fp32"].manifest
    data = load_dataset("fashion-mnist", "evaluation", PreprocessConfig.from_dict(manifest.preprocess),
                        manifest.labels, count=count, seed=0, num_classes=manifest.model["num_classes"])
    result: dict = {"env": {key: os.environ.get(key) for key in CAPS["avx2"]}, "isa": cpu_isa(),
                    "kernels": {name: kernels(path) for name, path in (("fp32", fp32), ("int8", int8))}}
    for runner in runners.values():
        runner.activate()
    result["top1"] = {name: float((runner.run(data.inputs).argmax(-1) == data.labels).mean())
                      for name, runner in runners.items()}
    result["count"] = len(data)
    for batch in (1, 32):
        x = data.inputs[:batch]
        calls = {name: (lambda runner=runner: runner.run(x)) for name, runner in runners.items()}
        timing = side_by_side(calls, baseline="fp32", rounds=rounds, block=8 if batch == 1 else 3,
                              settle_ms=BUNDLE_SETTLE_MS)
        result[f"batch{batch}"] = {"median_ms": timing.median_ms, "int8_speedup": timing.ratio["int8"]}
    for runner in runners.values():
        runner.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fp32", type=Path, help="the OpenVINO FP32 bundle")
    parser.add_argument("int8", type=Path, help="the OpenVINO INT8 bundle of the same model")
    parser.add_argument("--count", type=int, default=10000, help="test images for top-1")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--child", action="store_true", help="internal: measure in this process and print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.fp32, args.int8, args.count, args.rounds)))
        return
    results: dict = {"bundles": [str(args.fp32), str(args.int8)], "caps": {}}
    for cap, env in CAPS.items():
        command = [sys.executable, "-m", "benchmarks.isa_cap", str(args.fp32), str(args.int8), "--count",
                   str(args.count), "--rounds", str(args.rounds), "--child"]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
        if done.returncode != 0:
            raise SystemExit(f"cap {cap} failed: {failure_line(done.stderr)}")
        row = results["caps"][cap] = json.loads(done.stdout.strip().splitlines()[-1])
        speed = [row[f"batch{b}"]["int8_speedup"] for b in (1, 32)]
        print(f"cap {cap}: top-1 fp32 {row['top1']['fp32']:.4f} int8 {row['top1']['int8']:.4f}; INT8 over FP32 "
              + ", ".join(f"batch {batch} {ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
                          for batch, ratio in zip((1, 32), speed)), flush=True)
    print(write_result("isa_cap", results))


if __name__ == "__main__":
    main()
