"""Host commands: models, info, export, compile, deploy (they need the host extras: torch, onnx, converters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mait_deploy import backends
from mait_deploy._assets import VARIANT_TABLE
from mait_deploy._io import read_json
from mait_deploy.cli.app import (
    app,
    console,
    default_of,
    err_console,
    handle_errors,
    parse_batch,
    parse_key_values,
    print_json,
    status_spinner,
)
from mait_deploy.device.bundle import bundle_info
from mait_deploy.device.manifest import MANIFEST_FILE
from mait_deploy.device.profiling.measure import parse_list
from mait_deploy.device.signing import load_private_key, sign_bundle
from mait_deploy.errors import MaitDeployError
from mait_deploy.host import catalog
from mait_deploy.host.compile.api import DEFAULT_DATA, compile_model
from mait_deploy.host.compile.sensitivity import plot_sensitivity
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.deploy.pipeline import DeployOptions
from mait_deploy.host.export.onnx import ExportOptions, export_onnx
from mait_deploy.host.model.locality import SuggestRule, locality_report, plot_locality, write_report
from mait_deploy.host.remote.fleet_report import failure_line
from mait_deploy.results import Status


@app.command()
@handle_errors
def targets(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered targets: the extras they need, whether this host can build and run their bundles, and
    the options each takes (-O for compile, runtime options for its runner)."""
    rows = [catalog.describe(name) for name in backends.names()]
    if as_json:
        print_json(rows)
        return
    table = Table(title="targets (add one: docs/architecture.md)")
    for column in ("target", "what", "device extra", "host extra", "build here", "run here"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["target"], row["summary"], row["device_extra"], row["host_extra"], row["build_here"],
                      row["run_here"])
    console.print(table)
    options = Table(title="options: compile -t TARGET -O KEY=VALUE, and the runtime options a bundle's runner takes")
    for column in ("target", "kind", "option", "type", "default", "allowed", "help"):
        options.add_column(column, overflow="fold")
    for row in rows:
        for kind, declared in (("-O", row["compile_options"]), ("runtime", row["runtime_options"])):
            for option in declared:
                allowed = ", ".join(map(str, option["choices"])) if option["choices"] else (
                    f">= {option['minimum']:g}" if option["minimum"] is not None else "")
                if option["precisions"]:
                    allowed = (allowed + "; " if allowed else "") + f"{'/'.join(option['precisions'])} only"
                options.add_row(row["target"], kind, option["name"], option["type"],
                                "-" if option["default"] is None else json.dumps(option["default"]), allowed,
                                option["help"])
    console.print(options)


@app.command()
@handle_errors
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
           count: bool = typer.Option(False, "--count", help="Count every variant again with torch (seconds) "
                                                             "instead of reading the shipped table.")) -> None:
    """List the registered MaiT variants with counted parameters and FLOPs."""
    if count:
        from mait_deploy.host.model.stats import variant_stats

        stats = [s.to_dict() for s in variant_stats()]
    else:
        stats = read_json(VARIANT_TABLE, what="variant table")
    if as_json:
        print_json(stats)
        return
    table = Table(title="MaiT variants (counted by torch at batch 1; GMACs = multiply-adds, the paper's 'GFLOPs')")
    for column in ("variant", "backbone", "input", "tokens", "dim", "depth", "heads", "masked heads per block",
                   "mask", "params (M)", "GMACs", "paper: params / GMACs / top-1"):
        table.add_column(column, justify="left" if column in ("variant", "backbone", "mask") else "right",
                         no_wrap=column == "variant", overflow="fold")
    for s in stats:
        paper = "-" if s["paper"] is None else \
            f"{s['paper']['params_m']} M / {s['paper']['gmacs']} / {s['paper']['top1']}%"
        table.add_row(s["name"], s["backbone"], "x".join(map(str, s["input_shape"])), str(s["tokens"]),
                      str(s["embed_dim"]), str(s["depth"]), str(s["num_heads"]),
                      _run_lengths(s["masked_heads_per_block"]), f"{s['mask_mode']} {s['window']}",
                      f"{s['params'] / 1e6:.2f}", f"{s['gmacs']:.3f}", paper)
    console.print(table)


def _run_lengths(values: tuple[int, ...]) -> str:
    """(4, 4, 1, 1, 0) -> '4x2 1x2 0x1': a schedule on one line."""
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return " ".join(f"{value}x{count}" for value, count in runs)


@app.command()
@handle_errors
def info(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder, shipped name, exported .onnx or bundle folder (default: the shipped model)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a checkpoint, an exported .onnx or a bundle: architecture, masks, preprocessing, labels, size."""

    if checkpoint is not None and (Path(checkpoint) / MANIFEST_FILE).is_file():
        details, title = bundle_info(checkpoint), f"bundle {checkpoint}"
    else:
        from mait_deploy.host.model.info import checkpoint_info

        details = checkpoint_info(checkpoint)
        title = f"checkpoint {details['path']}"
    if as_json:
        print_json(details)
        return
    table = Table(title=title, show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in details.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


@app.command()
@handle_errors
def export(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped model)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the .onnx file (report: <output>.json)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset, 17 to 20."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 (FP16 weights and compute)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Fix the batch size (default: dynamic batch axis)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="Skip onnxsim."),
    fp16_io: bool = typer.Option(False, "--fp16-io", help="With --precision fp16: FP16 input/output too."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Export a checkpoint to ONNX: masks as one shared constant, simplified, verified against PyTorch."""

    options = ExportOptions(opset=opset, precision=precision, batch=batch, simplify=not no_simplify,
                            fp16_io=fp16_io, force=force)
    with status_spinner() as status:
        result = export_onnx(checkpoint, output, options, progress=status.update)
    if as_json:
        print_json(result.to_dict())
        return
    print_export_summary(result)


def print_export_summary(result) -> None:
    table = Table(title=f"exported {result.path}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    masks = result.graph["mask_constants"]
    parity = result.parity
    rows = [
        ("model", f"{result.model['name']} ({result.model['params'] / 1e6:.2f} M params)"),
        ("file", f"{result.file_bytes / 1e6:.2f} MB, opset {result.opset}, {result.options['precision']}, "
                 f"batch {result.options['batch']}"),
        ("nodes", f"{result.nodes_exported} exported -> "
                  f"{result.nodes_simplified if result.nodes_simplified is not None else '-'} after onnxsim"),
        ("attention masks", ", ".join(f"{m['name']} {m['shape']} {m['dtype']} -> {m['consumers']} {m['op']}s"
                                      for m in masks) or "none (unmasked model)"),
        ("parity", "not run" if parity is None else
         f"max |diff| {parity['max_abs_diff']:.2e}, mean {parity['mean_abs_diff']:.2e}, "
         f"top-1 agreement {parity['top1_agreement'] * 100:.2f}%, batches {parity['batch_sizes_checked']}"),
        ("timings", ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())),
        ("report", result.report_path),
    ] + [("note", note) for note in result.notes]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command(name="compile")
@handle_errors
def compile_command(
    model: Optional[str] = typer.Argument(None, help="Checkpoint (default: the shipped model; exported and verified first) or an exported .onnx."),
    target: str = typer.Option(backends.names()[0], "--target", "-t", help=f"Target: {', '.join(backends.names())}."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32, fp16, int8, or auto: build each, time those that pass the gate side by side here and keep the fastest (default: the target's, see docs/targets.md)."),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle folder to write."),
    calib: str = typer.Option(DEFAULT_DATA, "--calib", help="Calibration images (int8): 'fashion-mnist', a folder, or a .npy/.npz."),
    calib_count: int = typer.Option(default_of(CalibrationOptions, "count"), "--calib-count", min=1, help="Number of calibration images."),
    calib_method: str = typer.Option(default_of(CalibrationOptions, "method"), "--calib-method", help="minmax, entropy or percentile."),
    eval_data: str = typer.Option(DEFAULT_DATA, "--eval", help="Held-out labelled data for the accuracy gate."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", min=1, help="Gate on N images (default: all)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the accuracy gate (the manifest records it)."),
    max_accuracy_drop: float = typer.Option(default_of(CompileOptions, "max_accuracy_drop"), "--max-accuracy-drop", help="Fail when top-1 drops more than this many points."),
    gate_sample: Optional[int] = typer.Option(None, "--gate-sample", min=100, help="Gate on a fixed sample of N images first; the full set only where the drop's 99% interval reaches the limit (default: the full set)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch size N (LiteRT: one file per batch size, default 1) or 'dynamic'."),
    seed: int = typer.Option(default_of(CalibrationOptions, "seed"), "--seed", help="Seed for drawing calibration images."),
    target_option: list[str] = typer.Option([], "--target-option", "-O", help="Target-specific KEY=VALUE, e.g. -O accuracy_control=true -O device=GPU (openvino)."),
    float_layers: Optional[str] = typer.Option(None, "--float-layers", help="int8: comma-separated layers to keep in float (e.g. head,blocks.3.mlp.fc1)."),
    layer_fallback: bool = typer.Option(default_of(CompileOptions, "layer_fallback"), "--layer-fallback/--no-layer-fallback", help="int8: when the gate fails, keep the most sensitive layers in float until it passes."),
    sensitivity_plot: Optional[Path] = typer.Option(None, "--sensitivity-plot", help="Write the per-layer sensitivity chart here when the fallback ran."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle."),
    sign: Optional[Path] = typer.Option(None, "--sign", help="Sign the bundle with this Ed25519 private key (PEM); devices given the public key with --trust run only signed bundles."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compile a model for a target into a verified bundle (artifact + manifest + golden I/O)."""

    if sign is not None:  # the key is checked before the build, not after minutes of it

        load_private_key(sign)

    precision = precision or catalog.target(target).capabilities.default_precision
    options = CompileOptions(precision=precision, batch=parse_batch(batch), max_accuracy_drop=max_accuracy_drop, force=force,
                             calibration=CalibrationOptions(method=calib_method, count=calib_count, seed=seed),
                             target_options=parse_key_values(target_option), layer_fallback=layer_fallback,
                             float_layers=tuple(name.strip() for name in (float_layers or "").split(",") if name.strip()),
                             gate_sample=gate_sample)
    with status_spinner() as status:
        result = compile_model(model, target, options, output, calibration=calib,
                               evaluation=None if no_eval else eval_data, eval_count=eval_count,
                               progress=status.update)
    if sign is not None:
        sign_bundle(result.bundle, sign)
    fallback = result.manifest.build.get("layer_fallback")
    if sensitivity_plot and fallback:
        plot_sensitivity(fallback["sensitivity"], fallback["kept_float"], sensitivity_plot)
    if as_json:
        print_json(result.to_dict())
        return
    print_compile_summary(result)


def print_compile_summary(result) -> None:
    manifest = result.manifest
    gate = result.gate
    table = Table(title=f"bundle {result.bundle}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = [
        ("target / precision", f"{result.target} / {result.precision}"),
        ("artifact", f"{manifest.artifact.path} ({result.size_bytes / 1e6:.2f} MB), batch {manifest.batch}"),
        ("accuracy gate", "skipped (--no-eval)" if gate is None else
         f"{'PASS' if gate.passed else 'FAIL'}: top-1 {gate.top1 * 100:.2f}% vs FP32 "
         f"{gate.reference_top1 * 100:.2f}% (drop {gate.drop_points:+.2f} points, limit "
         f"{gate.max_drop:g}); agreement {gate.top1_agreement * 100:.2f}%; {gate.count} images"),
        ("golden I/O", f"{manifest.golden.count} images, tolerance {manifest.golden.tolerance.to_dict()}"),
        ("timings", ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())),
    ]
    rows += catalog.target(result.target).summary_lines(manifest)
    choice = manifest.build.get("precision_choice")
    if choice:
        rows.append(("precision choice", f"{choice['chosen']}: {choice['why']}" + "".join(
            f"; not {p}: {why}" for p, why in choice["not_chosen"].items())))
    kept = manifest.build.get("options", {}).get("float_layers")
    if kept:
        fallback = manifest.build.get("layer_fallback")
        rows.append(("kept in float", ", ".join(kept) + (f" (per-layer fallback: {fallback['why']})" if fallback
                                                          else " (--float-layers)")))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command()
@handle_errors
def deploy(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped model)."),
    output: Path = typer.Option(Path("mait-deploy-out"), "-o", "--output", help="Output folder (bundles, reports)."),
    targets: Optional[str] = typer.Option(None, "--targets", help=f"Comma list of targets: {', '.join(backends.names())} (default: every target whose extra is installed)."),
    precisions: str = typer.Option(default_of(DeployOptions, "precisions"), "--precisions", help="Comma list of fp32,fp16,bf16,int8 (bf16: OpenVINO, where the CPU computes it)."),
    calib: str = typer.Option(default_of(DeployOptions, "calibration"), "--calib", help="Calibration images for int8."),
    calib_count: int = typer.Option(default_of(DeployOptions, "calibration_count"), "--calib-count", min=1, help="Number of calibration images."),
    eval_data: str = typer.Option(default_of(DeployOptions, "evaluation"), "--eval", help="Held-out labelled images for the accuracy gate ('none' to skip)."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", min=1, help="Gate on N images (default: all)."),
    max_accuracy_drop: float = typer.Option(default_of(DeployOptions, "max_accuracy_drop"), "--max-accuracy-drop", help="Gate: max top-1 drop in points."),
    gate_sample: int = typer.Option(default_of(DeployOptions, "gate_sample"), "--gate-sample", min=0, help="Gate each bundle on a fixed sample of N images first; the full set only where the drop's 99% interval reaches the limit (0: every gate on the full set)."),
    profile_batches: str = typer.Option(default_of(DeployOptions, "profile_batches"), "--profile-batches", help="Batch sizes to profile."),
    iterations: int = typer.Option(default_of(DeployOptions, "profile_iterations"), "--iterations", min=1, help="Profiling iterations per batch size."),
    force: bool = typer.Option(False, "--force", help="Redo every stage instead of reusing verified ones."),
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help="Also run the bundles that passed on these boards over SSH (docs/remote.md) and recommend per board."),
    device: Optional[list[str]] = typer.Option(None, "--device", help="With --inventory: only this device (repeatable)."),
    tags: Optional[list[str]] = typer.Option(None, "--tags", help="With --inventory: only devices with this tag (repeatable)."),
    accept_new: bool = typer.Option(False, "--accept-new-host-keys", help="With --inventory: record unknown boards' host keys on first use."),
    device_eval_count: Optional[int] = typer.Option(None, "--device-eval-count", min=1, help="With --inventory: images scored on each board (default: --eval-count)."),
    sign: Optional[Path] = typer.Option(None, "--sign", help="Sign every bundle that passed with this Ed25519 private key (PEM)."),
    recommend_for: str = typer.Option(default_of(DeployOptions, "recommend_for"), "--for", help="What the recommendation is for: python (any bundle) or native (only bundles a C++ app can link: mait-deploy app)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Builds at once, in worker processes (default: one per core that fits in free memory; 1: one after the other in this process)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Run the builds on a Ray cluster at this address ('auto': the running one; the 'cluster' extra)."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout."),
) -> None:
    """Checkpoint -> ONNX -> bundles for every target x precision, each gated, verified and profiled; one report."""
    if (device or tags or accept_new or device_eval_count) and inventory is None:
        raise MaitDeployError("--device, --tags, --accept-new-host-keys and --device-eval-count need --inventory")
    from mait_deploy.host.deploy.pipeline import deploy as run_deploy
    from mait_deploy.host.deploy.report import markdown_table

    if sign is not None:
        load_private_key(sign)

    options = DeployOptions(
        targets=tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None,
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()), calibration=calib,
        calibration_count=calib_count, evaluation=None if eval_data == "none" else eval_data, eval_count=eval_count,
        max_accuracy_drop=max_accuracy_drop, gate_sample=gate_sample or None,
        profile_batches=parse_list(profile_batches, int, "batch"), profile_iterations=iterations, force=force, inventory=None if inventory is None else str(inventory),
        devices=tuple(device or ()), device_tags=tuple(tags or ()), accept_new_host_keys=accept_new,
        device_eval_count=device_eval_count, sign_key=None if sign is None else str(sign),
        recommend_for=recommend_for, jobs=jobs, cluster=cluster)
    with status_spinner() as status:
        report = run_deploy(checkpoint, output, options,
                            progress=lambda message, done, total: status.update(f"[{done}/{total}] {message}"))
    if as_json:
        print_json(report.to_dict())
        return
    console.print(markdown_table(report), highlight=False, markup=False, soft_wrap=True)
    console.print(f"reports: {output / 'report.json'}, {output / 'report.md'}, {output / 'report.png'} "
                  f"({report.seconds:.0f} s)", highlight=False)
    failed = [r for r in report.rows if r.status in (Status.FAILED, Status.FAILED_GATE)]
    if failed:
        raise MaitDeployError(f"{len(failed)} of {len(report.rows)} rows failed; see {output / 'report.md'}")

    failed_on_boards = failure_line(report.devices.fleet if report.devices else None, f"see {output / 'report.md'}")
    if failed_on_boards:
        raise MaitDeployError(failed_on_boards)


@app.command()
@handle_errors
def locality(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped model)."),
    data: str = typer.Option("fashion-mnist", "--data", help="Images: 'fashion-mnist' (test split), a folder or an .npz."),
    count: int = typer.Option(500, "--count", min=1, help="Images to average over."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing --count images."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the block x head heat map (PNG) here."),
    suggest: bool = typer.Option(False, "--suggest", help="Print the schedule the paper's section 4.2 rule gives."),
    all_above: float = typer.Option(0.75, "--all-heads-above", help="--suggest: mask every head of a block whose probe-head ALS is at least this."),
    none_below: float = typer.Option(0.35, "--no-heads-below", help="--suggest: mask no head of a block whose probe-head ALS is at most this."),
    probe_head: int = typer.Option(0, "--probe-head", min=0, help="--suggest: the head whose ALS decides (the paper masks head 0)."),
) -> None:
    """Attention Locality Score of every head on real images (the paper's equation 3), and the schedule it suggests."""

    rule = SuggestRule(all_above, none_below, probe_head) if suggest else None
    with status_spinner() as status:
        report = locality_report(checkpoint, data, count, seed, rule,
                                 progress=lambda done, total: status.update(f"attention of {done}/{total} images"))
    if json_out:
        write_report(report, json_out)
    if plot:
        plot_locality(report, plot)
    table = Table(title=f"ALS of {report.model} on {report.images} images ({report.window} window, "
                        f"{report.mask_mode}; uniform attention = {report.uniform_baseline:.2f}; * = masked)")
    table.add_column("block", justify="right")
    for head in range(len(report.scores[0]) if report.scores else 0):
        table.add_column(f"head {head}", justify="right")
    for block, row in enumerate(report.scores):
        table.add_row(str(block), *(f"{value:.3f}{'*' if head in report.masked[block] else ''}"
                                    for head, value in enumerate(row)))
    console.print(table)
    for note in report.notes:
        err_console.print(f"note: {note}", highlight=False)
    if report.suggested_schedule is not None:
        console.print("suggested schedule (MaskConfig.schedule): " + json.dumps(report.suggested_schedule),
                      highlight=False)
