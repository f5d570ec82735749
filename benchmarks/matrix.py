"""The full matrix: every target x precision through `deploy`, for the demo model (accuracy + speed) and
mait_xxs24_224 (random weights, speed), plus INT8 speed-ups (FP32 and INT8 bundles re-timed side by side) and
throughput as a fraction of this CPU's FP32 peak.

    python -m benchmarks.matrix [--models demo,xxs24] [--iterations 50]
    # -> benchmarks/results/matrix.json, matrix.md (the README table), matrix.png (throughput),
    #    matrix_demo_pareto.png (the demo's accuracy vs latency, from deploy's report.png)

The FP32 peak is measured, not quoted: the FLOP/s of a 2048x2048 FP32 matrix multiply (torch/oneDNN) on the same
threads. Model FLOPs are counted by torch's FlopCounterMode (2 per multiply-add).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks._common import RESULTS, benchmark_parser, side_by_side, write_result
from mait_deploy.host.deploy.pipeline import DeployOptions, deploy


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
    if with_accuracy and (out / "report.png").is_file():
        RESULTS.mkdir(exist_ok=True)
        shutil.copy(out / "report.png", RESULTS / "matrix_demo_pareto.png")
    rows = []
    for row in report.rows:
        entry = {"target": row.target, "precision": row.precision, "status": row.status, "reason": row.reason,
                 "top1": row.top1, "drop_points": row.drop_points, "size_mb": (row.size_bytes or 0) / 1e6,
                 "peak_rss_mb": row.peak_rss_mb, "latency": {k: v.to_dict() for k, v in row.latency.items()}}
        for key, lat in row.latency.items():
            entry.setdefault("fraction_of_fp32_peak", {})[key] = flops * lat.throughput / 1e9 / peak
        rows.append(entry)
    speedups = {}
    for target in sorted({r.target for r in report.rows}):
        fp32, int8 = (next((r for r in report.rows if r.target == target and r.precision == precision
                            and r.latency), None) for precision in ("fp32", "int8"))
        if fp32 and int8:
            speedups[target] = int8_speedup_side_by_side(Path(fp32.bundle), Path(int8.bundle), iterations)
    return {"model": name, "gflops_per_image": flops / 1e9, "rows": rows, "int8_speedup_p50": speedups,
            "recommended": report.to_dict()["recommended"], "seconds": report.seconds}


def int8_speedup_side_by_side(fp32_bundle: Path, int8_bundle: Path, iterations: int) -> dict[str, float]:
    """FP32 p50 / INT8 p50 with both bundles loaded and called round-robin. deploy profiles its rows one after
    another, and this machine's speed drifts up to 2x within a minute, so a ratio of two rows can be mostly
    drift (0.60x for the demo's ORT INT8 in one run); this one is not."""
    import numpy as np

    from mait_deploy.device.bundle import load_bundle

    ratios = {}
    with load_bundle(fp32_bundle) as fp32, load_bundle(int8_bundle) as int8:
        batches = (1,) if fp32.fixed_batch or int8.fixed_batch else (1, 32)
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, *fp32.sample_shape)).astype(np.float32)
            timed = side_by_side({"fp32": lambda: fp32.run(x), "int8": lambda: int8.run(x)},
                                 iterations if batch == 1 else max(5, iterations // 4), batch=batch)
            p50 = {label: stats["percentiles_ms"]["p50"] for label, stats in timed.items()}
            ratios[f"batch_{batch}"] = p50["fp32"] / p50["int8"]
    return ratios


def markdown(output: dict) -> str:
    """The README table: one line per model x target x precision."""
    lines = ["| model | target | precision | status | top-1 | drop | b1 p50 / p99 ms | b32 p50 ms | b32 img/s | "
             "b32 % of FP32 peak | INT8 speed-up b1 / b32 (side by side) | size MB | process peak RSS MB |",
             "|" + "---|" * 13]
    for model in output["models"]:
        short = model["model"].split(".")[0]
        for row in model["rows"]:
            lat = row["latency"]
            b1, b32 = lat.get("batch_1"), lat.get("batch_32")
            speed = model["int8_speedup_p50"].get(row["target"]) if row["precision"] == "int8" else None
            lines.append("| " + " | ".join([
                short, row["target"], row["precision"],
                row["status"] if row["status"] == "ok" else f"{row['status']}: {(row['reason'] or '')[:60]}",
                f"{row['top1'] * 100:.2f}%" if row["top1"] is not None else "-",
                f"{row['drop_points']:+.2f}" if row["drop_points"] is not None else "-",
                f"{b1['p50_ms']:.2f} / {b1['p99_ms']:.2f}" if b1 else "-",
                f"{b32['p50_ms']:.1f}" if b32 else "-", f"{b32['throughput']:.0f}" if b32 else "-",
                f"{row['fraction_of_fp32_peak']['batch_32'] * 100:.0f}%" if b32 else "-",
                " / ".join(f"{speed[k]:.2f}x" for k in ("batch_1", "batch_32") if k in speed) if speed else "-",
                f"{row['size_mb']:.1f}" if row["size_mb"] else "-",
                f"{row['peak_rss_mb']:.0f}" if row["peak_rss_mb"] else "-"]) + " |")
    return "\n".join(lines) + "\n"


def plot(output: dict, path: Path) -> None:
    """Throughput (images/s) per target x precision at batch 1 and 32, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = output["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in model["rows"] if r["status"] == "ok" and r["latency"]]
        short = {"onnxruntime": "ORT", "openvino": "OpenVINO", "litert": "LiteRT", "tensorrt": "TensorRT"}
        names = [f"{short.get(r['target'], r['target'])}\n{r['precision']}" for r in rows]
        positions = range(len(rows))
        for offset, key, color in ((-0.2, "batch_1", "#4c72b0"), (0.2, "batch_32", "#dd8452")):
            values = [r["latency"].get(key, {}).get("throughput", 0) for r in rows]
            ax.bar([p + offset for p in positions], values, width=0.4, color=color, label=key.replace("_", " "))
        ax.set_xticks(list(positions), names, fontsize=7)
        ax.set(ylabel="images/s (this machine)", title=f"{model['model']} ({model['gflops_per_image']:.3g} GFLOP/img)")
        ax.legend()
    fig.suptitle(f"throughput per target and precision (LiteRT bundles have a static batch of 1); FP32 sgemm "
                 f"peak {output['fp32_sgemm_peak_gflops']:.0f} GFLOP/s", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = benchmark_parser(__doc__, iterations=50)
    args = parser.parse_args()
    import torch

    from mait_deploy.host.model.checkpoint import load_checkpoint, save_checkpoint
    from mait_deploy.host.model.mait import create_model
    from mait_deploy.host.model.stats import count_flops
    from mait_deploy.host.model.zoo import resolve_checkpoint

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
    path = write_result("matrix", output)
    (RESULTS / "matrix.md").write_text(markdown(output))
    plot(output, RESULTS / "matrix.png")
    print(f"wrote {path}, matrix.md, matrix.png")


if __name__ == "__main__":
    main()
