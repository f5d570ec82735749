"""OpenVINO bundles: FP32 / bf16 / FP16 / INT8 latency at batch 1 and 32, throughput, size, accuracy, and our runner
against OpenVINO's own benchmark_app on the same IR.

    python -m benchmarks.openvino [--models demo,xxs24] [--iterations 40]  # -> benchmarks/results/openvino.json

"bf16" is the FP32 IR with INFERENCE_PRECISION_HINT=bf16 (the CPU plugin's default on CPUs with BF16); "int8" runs
its float parts in f32 (what the bundle's runner chooses) and "int8_bf16" in bf16 (the plugin default).
mait_xxs24_224 uses random weights (speed only). Timings of one model are taken side by side (round-robin).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import benchmark_models, side_by_side, write_result
from mait_deploy.bundle.load import load_bundle
from mait_deploy.compiler import compile_model
from mait_deploy.exporters.base import CalibrationOptions, CompileOptions
from mait_deploy.runtimes.base import RunnerOptions

# (label, bundle precision, inference precision hint)
CONFIGS = (("fp32", "fp32", "f32"), ("bf16", "fp32", "bf16"), ("fp16", "fp16", None), ("int8", "int8", "f32"),
           ("int8_bf16", "int8", "bf16"))


def bundle_bytes(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in ("model.xml", "model.bin"))


def benchmark_app(xml: Path, batch: int, shape: tuple[int, ...], seconds: int, threads: int) -> dict:
    """OpenVINO's benchmark_app, synchronous, one stream, f32 inference, the same batch and thread count."""
    command = ["benchmark_app", "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads",
               str(threads), "-api", "sync", "-ip", "f32", "-infer_precision", "f32", "-t", str(seconds),
               "-shape", f"input[{batch},{','.join(map(str, shape))}]"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 10 + 120).stdout
    median = re.search(r"Median:\s+([\d.]+) ms", output)
    throughput = re.search(r"Throughput:\s+([\d.]+) FPS", output)
    if not median:
        raise RuntimeError(f"could not parse benchmark_app output:\n{output[-1500:]}")
    return {"median_ms": float(median.group(1)), "fps": float(throughput.group(1)) if throughput else None,
            "command": " ".join(command)}


def bench(name: str, model, folder: Path, iterations: int, with_accuracy: bool, threads: int) -> dict:
    results: dict = {"model": name, "bundles": {}}
    for precision in ("fp32", "fp16", "int8"):
        out = folder / f"{name}-{precision}"
        compiled = compile_model(model, "openvino", CompileOptions(
            precision=precision, calibration=CalibrationOptions(count=256 if with_accuracy else 64)), out,
            evaluation="fashion-mnist" if with_accuracy else None)
        results["bundles"][precision] = {"bytes": bundle_bytes(out), "gate": compiled.gate,
                                         "fake_quantize": compiled.manifest["build"]["ir"]["fake_quantize"]}
        print(f"{name} {precision}: {bundle_bytes(out) / 1e6:.2f} MB"
              + (f", top-1 {compiled.gate['top1'] * 100:.2f}%" if compiled.gate else ""), flush=True)
    runners = {}
    for label, precision, hint in CONFIGS:
        extra = {"inference_precision": hint} if hint else {}
        runners[label] = load_bundle(folder / f"{name}-{precision}",
                                     RunnerOptions(threads=threads, extra=extra)).activate()
    results["ran_with"] = {label: r.runtime_info().get("inference_precision_hint") for label, r in runners.items()}
    shape = runners["fp32"].sample_shape
    latency = {}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
        its = iterations if batch == 1 else max(5, iterations // 4)
        stats = side_by_side({label: (lambda r=r: r.run(x)) for label, r in runners.items()}, its, batch=batch)
        row = {label: {"p50_ms": s["percentiles_ms"]["p50"], "p90_ms": s["percentiles_ms"]["p90"],
                       "throughput": s["throughput"], "count": s["count"]} for label, s in stats.items()}
        row["int8_speedup_vs_fp32"] = row["fp32"]["p50_ms"] / row["int8"]["p50_ms"]
        row["int8_speedup_vs_bf16"] = row["bf16"]["p50_ms"] / row["int8_bf16"]["p50_ms"]
        latency[f"batch_{batch}"] = row
        print(f"{name} batch {batch}: " + ", ".join(f"{k} {v['p50_ms']:.2f} ms" for k, v in row.items()
                                                    if isinstance(v, dict)), flush=True)
        # Our runner vs benchmark_app on the FP32 IR (f32): ours, theirs, ours again; the mean of our two medians.
        ours = [side_by_side({"runner": lambda: runners["fp32"].run(x)}, its, batch=batch)["runner"]
                ["percentiles_ms"]["p50"]]
        theirs = benchmark_app(folder / f"{name}-fp32" / "model.xml", batch, shape, 10, threads)
        ours.append(side_by_side({"runner": lambda: runners["fp32"].run(x)}, its, batch=batch)["runner"]
                    ["percentiles_ms"]["p50"])
        latency[f"batch_{batch}"]["vs_benchmark_app"] = {
            "runner_median_ms": float(np.mean(ours)), "benchmark_app_median_ms": theirs["median_ms"],
            "overhead_pct": 100 * (float(np.mean(ours)) / theirs["median_ms"] - 1),
            "benchmark_app_command": theirs["command"]}
    results["latency"] = latency
    for runner in runners.values():
        runner.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,xxs24")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    output = {"iterations": args.iterations, "threads": args.threads, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, with_accuracy in benchmark_models(args.models):
            output["models"].append(bench(name, model, Path(folder), args.iterations, with_accuracy, args.threads))
    print(f"wrote {write_result('openvino', output)}")


if __name__ == "__main__":
    main()
