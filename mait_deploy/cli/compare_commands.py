"""Host commands for other architectures: compare MaiT against baselines, and the mask transform on timm weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mait_deploy.cli.app import app, console, default_of, handle_errors, print_json, status_spinner
from mait_deploy.device.profiling.measure import parse_list
from mait_deploy.errors import MaitDeployError
from mait_deploy.host.compare.models import DEFAULT_MODELS
from mait_deploy.host.compare.report import RATIO_COLUMNS, ratio_rows
from mait_deploy.host.compare.run import CompareOptions
from mait_deploy.host.compare.run import compare as run_compare


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@app.command()
@handle_errors
def compare(
    models: Optional[list[str]] = typer.Argument(None, help="MaiT variants or checkpoints (default: mait_t_patch16_224, mait_pyramid_t_224, mait_pyramid_s_224)."),
    baselines: str = typer.Option("deit_tiny_patch16_224,cait_xxs24_224,swin_tiny_patch4_window7_224", "--baselines", help="Comma list: timm names (NAME=WEIGHTS for a checkpoint) or .onnx files."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (bundles/, compare.json/.md/.png)."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma list of targets (default: every target this machine can build and run)."),
    precisions: str = typer.Option(default_of(CompareOptions, "precisions"), "--precisions", help="Comma list of fp32,fp16,bf16,int8 (bf16: OpenVINO, where the CPU computes it)."),
    batch: str = typer.Option(default_of(CompareOptions, "batches"), "--batch", help="Comma list of batch sizes."),
    rounds: int = typer.Option(default_of(CompareOptions, "rounds"), "--rounds", help="Side-by-side rounds per target x precision x batch."),
    block: int = typer.Option(default_of(CompareOptions, "block"), "--block", help="Consecutive calls per model per round (the first is dropped)."),
    calib: str = typer.Option(default_of(CompareOptions, "calibration"), "--calib", help="Calibration images for int8."),
    calib_count: int = typer.Option(default_of(CompareOptions, "calibration_count"), "--calib-count", help="Number of calibration images."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Runtime threads (default: the runtime's)."),
    timm_python: Optional[str] = typer.Option(None, "--timm-python", help="A Python where timm imports, to build the timm baselines (default: this one)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier comparison in the output folder."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Builds at once, in worker processes (default: one per core that fits in free memory; 1: one after the other in this process)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Run the builds on a Ray cluster at this address ('auto': the running one; the 'cluster' extra)."),
    as_json: bool = typer.Option(False, "--json", help="Print compare.json to stdout."),
) -> None:
    """MaiT vs baselines (timm DeiT/CaiT/Swin), compiled per target and precision, timed side by side."""

    options = CompareOptions(targets=tuple(_names(targets)) if targets else None, precisions=tuple(_names(precisions)),
                             batches=tuple(parse_list(batch, int, "batch")), rounds=rounds, block=block,
                             calibration=calib, calibration_count=calib_count, threads=threads,
                             timm_python=timm_python, force=force, jobs=jobs, cluster=cluster)
    with status_spinner() as status:
        report = run_compare(list(models or DEFAULT_MODELS), _names(baselines), output, options,
                             progress=lambda message: status.update(message))
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title="throughput ratio, MaiT over baseline (> 1: the MaiT is faster)")
    for column in RATIO_COLUMNS:
        table.add_column(column)
    for row in ratio_rows(report):
        table.add_row(*row)
    console.print(table)
    for failure in report.failures:
        console.print(f"not built: {failure.model} {failure.target} {failure.precision}: {failure.reason}",
                      highlight=False)
    plots = [output / name for name in (report.plot, report.pareto_plot) if name]
    console.print("reports: " + ", ".join(str(p) for p in [output / "compare.json", output / "compare.md", *plots]),
                  highlight=False)
    if not report.cells:
        raise MaitDeployError("nothing was timed: every model failed to build; see compare.md")


@app.command(name="import-timm")
@handle_errors
def import_timm_command(
    weights: Path = typer.Argument(..., help="timm DeiT/ViT or CaiT weights (.safetensors or .pth state dict)."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint folder to write."),
    mode: Optional[str] = typer.Option(None, "--mode", help="additive or multiplicative (default: multiplicative for DeiT, additive for CaiT)."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="uniform:K, mixed or none (default: mixed for DeiT, the first half of the heads for CaiT)."),
    window: int = typer.Option(3, "--window", help="Odd side of the local window."),
    num_heads: Optional[int] = typer.Option(None, "--num-heads", help="Heads per block (DeiT/ViT: default 64-wide heads)."),
    force: bool = typer.Option(False, "--force", help="Replace a checkpoint this tool wrote."),
    as_json: bool = typer.Option(False, "--json", help="Print the checkpoint's config as JSON."),
) -> None:
    """The mask transform: timm weights (kept) + a mask schedule -> a MaiT checkpoint to fine-tune and deploy."""
    from mait_deploy.host.model.timm_import import import_timm_checkpoint

    with status_spinner() as status:
        status.update(f"importing {weights}")
        config = import_timm_checkpoint(weights, output, mode=mode, schedule=schedule, window=window,
                                        num_heads=num_heads, force=force)
    if as_json:
        print_json({"checkpoint": str(output), "config": config.to_dict(),
                    "masked_heads_per_block": [len(h) for h in config.layer_heads()]})
        return
    heads = ", ".join(str(len(h)) for h in config.layer_heads())
    console.print(f"{output}: {config.backbone} backbone, {config.depth} blocks, masked heads per block {heads} "
                  f"({config.mask.mode}, {config.mask.window_label})", highlight=False)
