"""ExecuTorch bundles next to ONNX Runtime FP32, side by side in one process: ExecuTorch FP32 latency over ONNX
Runtime FP32's (the target: <= 1.1), its INT8 speed-up over its own FP32 (the target: >= 1.5), the delegated share
of each graph, sizes, and the INT8 gate on the 10,000 test images (the target: a drop <= 0.5 point).

    python -m benchmarks.executorch [--models demo,xxs24] [--batches 1,8] [--iterations 300]
    # -> benchmarks/results/executorch.json

ExecuTorch programs have a static batch: one bundle per batch size. ONNX Runtime's bundle is dynamic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import benchmark_models, benchmark_parser, side_by_side, write_result
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions


def _bundle(model: Any, target: str, precision: str, batch: int | None, out: Path, with_accuracy: bool) -> dict:
    options = CompileOptions(precision=precision, batch=batch, calibration=CalibrationOptions(count=256))
    result = compile_model(model, target, options, out, evaluation="fashion-mnist" if with_accuracy else None)
    entry: dict[str, Any] = {"bytes": result.size_bytes, "build_s": result.seconds.get("build")}
    if result.gate is not None:
        entry["gate"] = result.gate.to_dict()
    if "delegation" in result.manifest.build:
        entry["delegation"] = result.manifest.build["delegation"]
    return entry


def bench(name: str, model: Any, folder: Path, batches: list[int], iterations: int, with_accuracy: bool,
          threads: int) -> dict:
    results: dict[str, Any] = {"model": name, "bundles": {}, "batches": {}}
    ort = folder / f"{name}-onnxruntime-fp32"
    results["bundles"]["onnxruntime-fp32"] = _bundle(model, "onnxruntime", "fp32", None, ort, with_accuracy)
    for batch in batches:
        paths = {"onnxruntime_fp32": ort}
        for precision in ("fp32", "int8"):
            key = f"executorch-{precision}-b{batch}"
            paths[f"executorch_{precision}"] = folder / f"{name}-{key}"
            # The gate on the full test set once per precision (batch 1); other batch sizes compute the same.
            results["bundles"][key] = _bundle(model, "executorch", precision, batch, folder / f"{name}-{key}",
                                              with_accuracy and batch == batches[0])
        runners = {label: load_bundle(path, RunnerOptions(threads=threads)).activate() for label, path in paths.items()}
        x = np.random.default_rng(0).standard_normal((batch, *runners["onnxruntime_fp32"].sample_shape)) \
            .astype(np.float32)
        stats = side_by_side({label: (lambda r=r: r._infer(x)) for label, r in runners.items()}, iterations,
                             warmup=10, batch=batch)
        p50 = {label: s["percentiles_ms"]["p50"] for label, s in stats.items()}
        results["batches"][str(batch)] = {
            "p50_ms": p50,
            "executorch_fp32_over_onnxruntime_fp32": p50["executorch_fp32"] / p50["onnxruntime_fp32"],
            "executorch_int8_speedup_over_its_fp32": p50["executorch_fp32"] / p50["executorch_int8"],
            "per_round_ratio_vs_onnxruntime_fp32": {label: s["ratio_vs_first"] for label, s in stats.items()},
        }
        for runner in runners.values():
            runner.close()
        row = results["batches"][str(batch)]
        print(f"{name} b{batch}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in p50.items())
              + f"; ET FP32/ORT FP32 {row['executorch_fp32_over_onnxruntime_fp32']:.2f}, ET INT8 "
              f"x{row['executorch_int8_speedup_over_its_fp32']:.2f}", flush=True)
    return results


def main() -> None:
    parser = benchmark_parser(__doc__, iterations=300, threads=True)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    output: dict[str, Any] = {"threads": args.threads, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, with_accuracy in benchmark_models(args.models):
            iterations = args.iterations if with_accuracy else max(30, args.iterations // 5)
            output["models"].append(bench(name, model, Path(folder), batches, iterations, with_accuracy,
                                          args.threads))
    print(f"wrote {write_result('executorch', output)}")


if __name__ == "__main__":
    main()
