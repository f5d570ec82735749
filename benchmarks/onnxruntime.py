"""ONNX Runtime bundles: accuracy, size, latency at batch 1 and 32, INT8 speed-up, and the runner's overhead.

    python -m benchmarks.onnxruntime [--models demo,xxs24] [--iterations 40]  # -> benchmarks/results/onnxruntime.json

Demo model: the shipped checkpoint, accuracy on the full Fashion-MNIST test set when installed. mait_xxs24_224:
random weights (speed only; calibrated on Fashion-MNIST images resized to 224x224 RGB, no accuracy gate).
Timings are side by side (round-robin) so machine noise hits FP32 and INT8 alike; the runner overhead compares
Runner.run with a bare InferenceSession.run on the same session options, also round-robin.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import (
    benchmark_models,
    benchmark_parser,
    side_by_side,
    write_result,
)
from mait_deploy.device.bundle import load_bundle
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions


def bundle_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name not in ("manifest.json", "golden.npz"))


def bench(name: str, model, folder: Path, iterations: int, with_accuracy: bool) -> dict:
    results: dict = {"model": name, "bundles": {}}
    for precision in ("fp32", "int8"):
        out = folder / f"{name}-{precision}"
        compiled = compile_model(model, "onnxruntime", CompileOptions(precision=precision,
                                 calibration=CalibrationOptions(count=256 if with_accuracy else 64)), out,
                                 evaluation="fashion-mnist" if with_accuracy else None)
        results["bundles"][precision] = {"bytes": bundle_size(out), "gate": compiled.gate,
                                         "seconds": compiled.seconds}
        print(f"{name} {precision}: {bundle_size(out) / 1e6:.2f} MB"
              + (f", top-1 {compiled.gate.top1 * 100:.2f}%" if compiled.gate else ""), flush=True)
    runners = {p: load_bundle(folder / f"{name}-{p}").activate() for p in ("fp32", "int8")}
    shape = runners["fp32"].sample_shape
    latency = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
        its = iterations if batch == 1 else max(5, iterations // 4)
        stats = side_by_side({p: (lambda r=r: r.run(x)) for p, r in runners.items()}, iterations=its, batch=batch)
        latency[f"batch_{batch}"] = {
            p: {"p50_ms": s["percentiles_ms"]["p50"], "p90_ms": s["percentiles_ms"]["p90"],
                "p99_ms": s["percentiles_ms"]["p99"], "throughput": s["throughput"], "count": s["count"]}
            for p, s in stats.items()}
        latency[f"batch_{batch}"]["int8_speedup_p50"] = (stats["fp32"]["percentiles_ms"]["p50"]
                                                        / stats["int8"]["percentiles_ms"]["p50"])
        print(f"{name} batch {batch}: fp32 p50 {stats['fp32']['percentiles_ms']['p50']:.2f} ms, int8 p50 "
              f"{stats['int8']['percentiles_ms']['p50']:.2f} ms", flush=True)
    results["latency"] = latency
    # Runner overhead at batch 1 (where it matters most): Runner.run vs the bare session it wraps.
    overhead = {}
    for precision, runner in runners.items():
        session = runner._session
        x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
        stats = side_by_side({"runner": lambda: runner.run(x),
                              "bare_session": lambda: session.run(None, {runner.input_name: x})},
                             iterations=iterations * 5, batch=1)
        overhead[precision] = {
            "runner_p50_ms": stats["runner"]["percentiles_ms"]["p50"],
            "bare_p50_ms": stats["bare_session"]["percentiles_ms"]["p50"],
            "overhead_pct": 100 * (stats["runner"]["percentiles_ms"]["p50"]
                                   / stats["bare_session"]["percentiles_ms"]["p50"] - 1),
        }
    results["runner_overhead_batch_1"] = overhead
    for runner in runners.values():
        runner.close()
    return results


def main() -> None:
    parser = benchmark_parser(__doc__, iterations=40)
    args = parser.parse_args()
    output = {"iterations": args.iterations, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, with_accuracy in benchmark_models(args.models):
            output["models"].append(bench(name, model, Path(folder), args.iterations, with_accuracy))
    print(f"wrote {write_result('onnxruntime', output)}")


if __name__ == "__main__":
    main()
