"""Check the profiler against independent tools, alternating in one run so that the shared machine's drifts hit
both sides:

- OpenVINO: `profile()` on an FP32 IR vs OpenVINO's benchmark_app on the same IR (same batch, 1 stream, same
  thread count, f32, static shape). Two ratios per round: our timed call / benchmark_app's median, and OpenVINO's
  own latency recorded by `profile()` / benchmark_app's median (benchmark_app reports InferRequest.latency).
- LiteRT: `profile()` on an FP32 .tflite vs a bare interpreter loop (set_tensor + invoke) on the same file.

    python -m benchmarks.profiler_check [--models demo,xxs24] [--rounds 5]  # -> benchmarks/results/profiler_check.json

Target: within 5%. Per-round ratios, then their median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import benchmark_models, benchmark_parser, write_result
from benchmarks.openvino import benchmark_app
from mait_deploy.backends.litert.runner import make_interpreter
from mait_deploy.device.manifest import read_manifest
from mait_deploy.device.profiling.measure import ProfileOptions, profile
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CompileOptions


def _summary(rows: list[dict], ours: str, theirs: str) -> dict:
    ratios = [row[ours] / row[theirs] for row in rows]
    ratio = statistics.median(ratios)
    return {"ratio": ratio, "within_5_percent": abs(ratio - 1) <= 0.05, "round_ratios": ratios}


def check_openvino(bundle: Path, shape: tuple[int, ...], batches: tuple[int, ...], rounds: int, seconds: int,
                   threads: int) -> dict:
    results = {}
    for batch in batches:
        rows = []
        for _ in range(rounds):
            report = profile(bundle, ProfileOptions(batches=(batch,), warmup=10, iterations=None, duration_s=seconds,
                                                    threads=threads, end_to_end=False,
                                                    runtime_options={"inference_precision": "f32"}))
            result = report.results[0]
            if result.error:
                raise RuntimeError(result.error)
            reference = benchmark_app(bundle / "model.xml", batch, shape, seconds, threads)
            rows.append({"profile_p50_ms": result.model["percentiles_ms"]["p50"],
                         "profile_openvino_own_p50_ms": result.runtime_reported["percentiles_ms"]["p50"],
                         "benchmark_app_median_ms": reference["median_ms"],
                         "benchmark_app_ms_per_iteration": reference["ms_per_iteration"]})
        results[f"batch_{batch}"] = {
            "timed_call": _summary(rows, "profile_p50_ms", "benchmark_app_median_ms"),
            "openvino_own_latency": _summary(rows, "profile_openvino_own_p50_ms", "benchmark_app_median_ms"),
            "rounds": rows, "benchmark_app_command": reference["command"]}
        line = results[f"batch_{batch}"]
        print(f"  openvino batch {batch}: profile / benchmark_app {line['timed_call']['ratio']:.3f}, OpenVINO's own "
              f"latency in profile / benchmark_app {line['openvino_own_latency']['ratio']:.3f}", flush=True)
    return results


def check_litert(bundle: Path, rounds: int, seconds: float, threads: int) -> dict:
    interpreter, package = make_interpreter(str(bundle / "model.tflite"), threads, xnnpack=True)
    detail = interpreter.get_input_details()[0]
    x = np.random.default_rng(1).standard_normal(detail["shape"]).astype(np.float32)
    rows = []
    for _ in range(rounds):
        report = profile(bundle, ProfileOptions(batches=(int(detail["shape"][0]),), warmup=10, iterations=None,
                                                duration_s=seconds, threads=threads, end_to_end=False))
        for _ in range(10):
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
        bare = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            bare.append(time.perf_counter_ns() - started)
        rows.append({"profile_p50_ms": report.results[0].model["percentiles_ms"]["p50"],
                     "bare_interpreter_p50_ms": float(np.median(bare)) / 1e6})
    result = {"interpreter": package, **_summary(rows, "profile_p50_ms", "bare_interpreter_p50_ms"), "rounds": rows}
    print(f"  litert batch 1: profile / bare interpreter {result['ratio']:.3f}", flush=True)
    return result


def main() -> None:
    parser = benchmark_parser(__doc__, threads=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3, help="per side and round")
    args = parser.parse_args()
    output = {"rounds": args.rounds, "threads": args.threads, "seconds_per_side": args.seconds, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, model, _ in benchmark_models(args.models):
            print(name, flush=True)
            ov_bundle, lite_bundle = folder / f"{name}-openvino", folder / f"{name}-litert"
            compile_model(model, "openvino", CompileOptions(precision="fp32"), ov_bundle, evaluation=None)
            compile_model(model, "litert", CompileOptions(precision="fp32"), lite_bundle, evaluation=None)
            shape = tuple(int(d) for d in read_manifest(ov_bundle).inputs[0].shape[1:])
            output["models"].append({
                "model": name,
                "openvino": check_openvino(ov_bundle, shape, (1, 8), args.rounds, args.seconds, args.threads),
                "litert": check_litert(lite_bundle, args.rounds, args.seconds, args.threads)})
    print(f"wrote {write_result('profiler_check', output)}")


if __name__ == "__main__":
    main()
