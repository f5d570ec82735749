"""LiteRT bundles: FP32 / FP16 / INT8 latency at batch 1 (median, p90), size, accuracy and parity, and our runner
next to a bare interpreter loop on the same .tflite (the profiler check for LiteRT).

    python -m benchmarks.litert [--models demo,xxs24] [--iterations 200]  # -> benchmarks/results/litert.json
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
from mait_deploy.backends.litert.runner import make_interpreter
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions


def bench(name: str, model, folder: Path, iterations: int, with_accuracy: bool, threads: int) -> dict:
    results: dict = {"model": name, "bundles": {}}
    for precision in ("fp32", "fp16", "int8"):
        out = folder / f"{name}-{precision}"
        compiled = compile_model(model, "litert", CompileOptions(
            precision=precision, calibration=CalibrationOptions(count=256 if with_accuracy else 64)), out,
            evaluation="fashion-mnist" if with_accuracy else None)
        results["bundles"][precision] = {"bytes": (out / "model.tflite").stat().st_size, "gate": compiled.gate,
                                         "ops": compiled.manifest.build["interpreter_check"]["ops"]}
    runners = {p: load_bundle(folder / f"{name}-{p}", RunnerOptions(threads=threads)).activate()
               for p in ("fp32", "fp16", "int8")}
    shape = runners["fp32"].sample_shape
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    stats = side_by_side({p: (lambda r=r: r._infer(x)) for p, r in runners.items()}, iterations, warmup=10)
    results["latency_batch_1"] = {p: {"p50_ms": s["percentiles_ms"]["p50"], "p90_ms": s["percentiles_ms"]["p90"],
                                      "count": s["count"]} for p, s in stats.items()}
    results["int8_speedup_vs_fp32"] = stats["fp32"]["percentiles_ms"]["p50"] / stats["int8"]["percentiles_ms"]["p50"]
    results["fp16_speedup_vs_fp32"] = stats["fp32"]["percentiles_ms"]["p50"] / stats["fp16"]["percentiles_ms"]["p50"]
    # Profiler check: our runner's timed call vs a bare interpreter loop on the same file and threads.
    interpreter, _ = make_interpreter(str(folder / f"{name}-fp32" / "model.tflite"), threads, xnnpack=True)
    index_in = interpreter.get_input_details()[0]["index"]

    def bare() -> None:
        interpreter.set_tensor(index_in, x)
        interpreter.invoke()

    check = side_by_side({"runner": lambda: runners["fp32"]._infer(x), "bare_interpreter": bare}, iterations * 2,
                         warmup=10)
    results["runner_vs_bare_interpreter"] = {
        "runner_p50_ms": check["runner"]["percentiles_ms"]["p50"],
        "bare_p50_ms": check["bare_interpreter"]["percentiles_ms"]["p50"],
        "ratio": check["runner"]["percentiles_ms"]["p50"] / check["bare_interpreter"]["percentiles_ms"]["p50"]}
    for runner in runners.values():
        runner.close()
    print(f"{name}: " + ", ".join(f"{p} {v['p50_ms']:.2f} ms" for p, v in results["latency_batch_1"].items())
          + f"; int8 x{results['int8_speedup_vs_fp32']:.2f}", flush=True)
    return results


def main() -> None:
    parser = benchmark_parser(__doc__, iterations=200, threads=True)
    args = parser.parse_args()
    output = {"threads": args.threads, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, with_accuracy in benchmark_models(args.models):
            iterations = args.iterations if with_accuracy else max(20, args.iterations // 10)
            output["models"].append(bench(name, model, Path(folder), iterations, with_accuracy, args.threads))
    print(f"wrote {write_result('litert', output)}")


if __name__ == "__main__":
    main()
