"""The full matrix: every target x precision through `deploy`, for the demo model (accuracy + speed) and
mait_xxs24_224 (random weights, speed), plus INT8 speed-ups and throughput as a fraction of this CPU's FP32 peak.

    python -m benchmarks.matrix [--models demo,xxs24] [--iterations 50]  # -> benchmarks/results/matrix.json

The FP32 peak is measured, not quoted: the FLOP/s of a 2048x2048 FP32 matrix multiply (torch/oneDNN) on the same
threads. Model FLOPs are counted by torch's FlopCounterMode (2 per multiply-add).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._common import write_result
from mait_deploy.pipeline import DeployOptions, deploy


def sgemm_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def run(name: str, checkpoint: str | None, out: Path, iterations: int, with_accuracy: bool, flops: int,
        peak: float) -> dict:
    options = DeployOptions(evaluation="fashion-mnist" if with_accuracy else None, profile_batches=(1, 32),
                            profile_iterations=iterations, calibration_count=256 if with_accuracy else 64)
    report = deploy(checkpoint, out, options)
    rows = []
    for row in report.rows:
        entry = {"target": row.target, "precision": row.precision, "status": row.status, "reason": row.reason,
                 "top1": row.top1, "drop_points": row.drop_points, "size_mb": (row.size_bytes or 0) / 1e6,
                 "peak_rss_mb": row.peak_rss_mb, "latency": row.latency}
        for key, lat in row.latency.items():
            entry.setdefault("fraction_of_fp32_peak", {})[key] = flops * lat["throughput"] / 1e9 / peak
        rows.append(entry)
    speedups = {}
    for target in {r["target"] for r in rows}:
        fp32 = next((r for r in rows if r["target"] == target and r["precision"] == "fp32" and r["latency"]), None)
        int8 = next((r for r in rows if r["target"] == target and r["precision"] == "int8" and r["latency"]), None)
        if fp32 and int8:
            speedups[target] = {k: fp32["latency"][k]["p50_ms"] / int8["latency"][k]["p50_ms"]
                                for k in fp32["latency"] if k in int8["latency"]}
    return {"model": name, "gflops_per_image": flops / 1e9, "rows": rows, "int8_speedup_p50": speedups,
            "recommended": report.recommended, "seconds": report.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,xxs24")
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    import torch

    from mait_deploy.model.checkpoint import load_checkpoint, save_checkpoint
    from mait_deploy.model.mait import create_model
    from mait_deploy.model.stats import count_flops
    from mait_deploy.model.zoo import resolve_checkpoint

    peak = sgemm_peak_gflops()
    print(f"FP32 sgemm peak on this machine: {peak:.1f} GFLOP/s", flush=True)
    output = {"fp32_sgemm_peak_gflops": peak, "models": []}
    with tempfile.TemporaryDirectory() as folder:
        for key in args.models.split(","):
            if key == "demo":
                flops = count_flops(load_checkpoint(resolve_checkpoint(None)))
                output["models"].append(run("mait_demo_28.fmnist", None, Path(folder) / "demo", args.iterations,
                                            True, flops, peak))
            elif key == "xxs24":
                torch.manual_seed(0)
                model = create_model("mait_xxs24_224").eval()
                checkpoint = save_checkpoint(model, Path(folder) / "xxs24-ckpt")
                output["models"].append(run("mait_xxs24_224", str(checkpoint), Path(folder) / "xxs24",
                                            max(5, args.iterations // 5), False, count_flops(model), peak))
            else:
                raise SystemExit(f"unknown model key {key!r}")
            print(f"{key} done", flush=True)
    print(f"wrote {write_result('matrix', output)}")


if __name__ == "__main__":
    main()
