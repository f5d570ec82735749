"""The ``mait-deploy`` command. Each command is a few lines over one public library function."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ._interrupts import interrupt_requested, raise_if_interrupted, remember_interrupts
from .errors import MaitDeployError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take MaiT image transformers to embedded devices: export, compile, run, profile.")
# Off a terminal (pipes, CI logs) rich would fold tables to 80 columns; give them room instead.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
_state = {"debug": False}


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a MaitDeployError as one line and exit non-zero (a traceback only with --debug); exit 130 on Ctrl-C."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with remember_interrupts():
                try:
                    result = func(*args, **kwargs)
                except BaseException as err:
                    # A Ctrl-C a library turned into its own error (torch.onnx: "export failed") is an interrupt.
                    if interrupt_requested() and not isinstance(err, KeyboardInterrupt) and not _state["debug"]:
                        raise KeyboardInterrupt from err
                    raise
                raise_if_interrupted()  # one a library swallowed outright
                return result
        except MaitDeployError as err:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/] (no partial output was left behind)")
            raise typer.Exit(code=130) from None
        except OSError as err:  # a full disk, a read-only folder...: the atomic writers already cleaned up
            if _state["debug"]:
                raise
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            err_console.print(f"[bold red]error:[/] {err.strerror or err}{where}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None

    return wrapper


def parse_key_values(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values are JSON when they parse (true, 3, 0.5), else plain strings."""
    from .errors import UnsupportedOption

    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UnsupportedOption(f"expected KEY=VALUE, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def parse_batch(text: str | None) -> int | str | None:
    """--batch: None, 'dynamic' or a positive integer."""
    from .errors import UnsupportedOption

    if text is None or text == "dynamic":
        return text
    try:
        return int(text)
    except ValueError:
        raise UnsupportedOption(f"--batch takes a positive integer or 'dynamic', got {text!r}") from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
@handle_errors
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the registered MaiT variants with counted parameters and FLOPs."""
    from .model.stats import variant_stats

    stats = variant_stats()
    if as_json:
        print_json([s.to_dict() for s in stats])
        return
    table = Table(title="MaiT variants (FLOPs counted by torch at batch 1, 2 per multiply-add)")
    for column in ("variant", "input", "tokens", "dim", "depth", "heads", "masked heads", "window", "params (M)",
                   "GFLOPs", "GMACs"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for s in stats:
        table.add_row(s.name, "x".join(map(str, s.input_shape)), str(s.tokens), str(s.embed_dim), str(s.depth),
                      str(s.num_heads), ",".join(map(str, s.masked_heads)) or "-", f"{s.window}x{s.window}",
                      f"{s.params / 1e6:.2f}", f"{s.gflops:.3f}", f"{s.gmacs:.3f}")
    console.print(table)


@app.command()
@handle_errors
def info(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped demo)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a checkpoint: architecture, masks, preprocessing, labels, size."""
    from .model.info import checkpoint_info

    details = checkpoint_info(checkpoint)
    if as_json:
        print_json(details)
        return
    table = Table(title=f"checkpoint {details['path']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in details.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


@app.command()
@handle_errors
def evaluate(
    model: Optional[str] = typer.Argument(None, help="Bundle folder, checkpoint folder or shipped name (default: the shipped demo)."),
    data: str = typer.Option("fashion-mnist", "--data", help="Labelled data: 'fashion-mnist' (test split), a folder with class sub-folders, or an .npz with labels."),
    count: Optional[int] = typer.Option(None, "--count", help="Evaluate on N images drawn (stratified, seeded) from the data."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing --count images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Top-1 accuracy of a bundle (device runtime) or a checkpoint (PyTorch) on labelled held-out data."""
    from .calibration.evaluate import evaluate as evaluate_any

    result = evaluate_any(model, data, count, seed)
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(f"top-1 {result.top1 * 100:.2f}% ({result.correct}/{result.count}) of {result.model} on "
                      f"{result.data} in {result.seconds:.1f} s", highlight=False)


def _status():
    """A spinner on stderr for long steps (stdout stays clean for --json)."""
    return err_console.status("working", spinner="dots")


@app.command()
@handle_errors
def export(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped demo)."),
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
    from .exporters.onnx import ExportOptions, export_onnx

    options = ExportOptions(opset=opset, precision=precision, batch=batch, simplify=not no_simplify,
                            fp16_io=fp16_io, force=force)
    with _status() as status:
        result = export_onnx(checkpoint, output, options, progress=status.update)
    if as_json:
        print_json(result.to_dict())
        return
    print_export_summary(result)


def print_export_summary(result) -> None:
    table = Table(title=f"exported {result.path}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    biases = result.graph["bias_initializers"]
    parity = result.parity
    rows = [
        ("model", f"{result.model['name']} ({result.model['params'] / 1e6:.2f} M params)"),
        ("file", f"{result.file_bytes / 1e6:.2f} MB, opset {result.opset}, {result.options['precision']}, "
                 f"batch {result.options['batch']}"),
        ("nodes", f"{result.nodes_exported} exported -> "
                  f"{result.nodes_simplified if result.nodes_simplified is not None else '-'} after onnxsim"),
        ("attention bias", ", ".join(f"{b['name']} {b['shape']} {b['dtype']} -> {b['consumers']} Adds" for b in biases)
         or "none (unmasked model)"),
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
    model: Optional[str] = typer.Argument(None, help="Checkpoint (default: the shipped demo; exported and verified first) or an exported .onnx."),
    target: str = typer.Option("onnxruntime", "--target", "-t", help="Target: onnxruntime, openvino, tensorrt or litert."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32, fp16 or int8 (default: the target's measured best: int8 for litert, fp32 elsewhere)."),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle folder to write."),
    calib: str = typer.Option("fashion-mnist", "--calib", help="Calibration images (int8): 'fashion-mnist', a folder, or a .npy/.npz."),
    calib_count: int = typer.Option(256, "--calib-count", min=1, help="Number of calibration images."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    eval_data: str = typer.Option("fashion-mnist", "--eval", help="Held-out labelled data for the accuracy gate."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", min=1, help="Gate on N images (default: all)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the accuracy gate (the manifest records it)."),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help="Fail when top-1 drops more than this many points."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch size N (LiteRT: one file per batch size, default 1) or 'dynamic'."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing calibration images."),
    target_option: list[str] = typer.Option([], "--target-option", "-O", help="Target-specific KEY=VALUE, e.g. -O accuracy_control=true -O device=GPU (openvino)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compile a model for a target into a verified bundle (artifact + manifest + golden I/O)."""
    from .compiler import compile_model
    from .exporters.base import CalibrationOptions, CompileOptions, get_target

    precision = precision or get_target(target).capabilities.default_precision
    options = CompileOptions(precision=precision, batch=parse_batch(batch), max_accuracy_drop=max_accuracy_drop, force=force,
                             calibration=CalibrationOptions(method=calib_method, count=calib_count, seed=seed),
                             target_options=parse_key_values(target_option))
    with _status() as status:
        result = compile_model(model, target, options, output, calibration=calib,
                               evaluation=None if no_eval else eval_data, eval_count=eval_count,
                               progress=status.update)
    if as_json:
        print_json(result.to_dict())
        return
    print_compile_summary(result)


def print_compile_summary(result) -> None:
    manifest = result.manifest
    gate = result.gate
    size = manifest["artifact"]["bytes"] + sum(f["bytes"] for f in manifest["files"])
    table = Table(title=f"bundle {result.bundle}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    rows = [
        ("target / precision", f"{result.target} / {result.precision}"),
        ("artifact", f"{manifest['artifact']['path']} ({size / 1e6:.2f} MB), batch {manifest['batch']}"),
        ("accuracy gate", "skipped (--no-eval)" if gate is None else
         f"{'PASS' if gate['passed'] else 'FAIL'}: top-1 {gate['top1'] * 100:.2f}% vs FP32 "
         f"{gate['reference_top1'] * 100:.2f}% (drop {gate['drop_points']:+.2f} points, limit "
         f"{gate['max_drop']:g}); agreement {gate['top1_agreement'] * 100:.2f}%; {gate['count']} images"),
        ("golden I/O", f"{manifest['golden']['count']} images, tolerance {manifest['golden']['tolerance']}"),
        ("timings", ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())),
    ]
    quantization = manifest["build"].get("quantization")
    if quantization:
        detail = quantization["method"]
        if "calibration_images" in quantization:
            detail += f" on {quantization['calibration_images']} images"
        if "quantized_ops" in quantization:
            detail += (f"; INT8 inputs for {sum(quantization['quantized_ops'].values())} ops "
                       f"{quantization['quantized_ops']}; Softmax, LayerNorm, bias Add and GELU stay float")
        ir = manifest["build"].get("ir", {})
        if "fake_quantize" in ir:
            detail += (f"; {ir['fake_quantize']} FakeQuantize, {len(ir['float_compute_layers'])} MatMul/Conv "
                       f"layers left in float")
        rows.append(("quantization", detail))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command()
@handle_errors
def predict(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    images: list[Path] = typer.Argument(..., help="Image files (png/jpg/bmp)."),
    top: int = typer.Option(1, "--top", min=1, help="Show the top K classes."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classify images with a bundle (numpy + the bundle's runtime only)."""
    from .bundle.load import load_bundle
    from .runtimes.base import RunnerOptions

    with load_bundle(bundle, RunnerOptions(threads=threads)) as runner:
        prediction = runner.predict([str(p) for p in images])
    rows = prediction.to_list(top=top)
    if as_json:
        print_json({"bundle": str(bundle), "inference_ms": prediction.inference_ms,
                    "preprocess_ms": prediction.preprocess_ms,
                    "predictions": [{"image": str(p), **row} for p, row in zip(images, rows)]})
        return
    table = Table(title=f"{bundle} ({prediction.inference_ms:.2f} ms inference, "
                        f"{prediction.preprocess_ms:.2f} ms preprocessing)")
    for column in ("image", "label", "score", f"top {top}"):
        table.add_column(column)
    for path, row in zip(images, rows):
        table.add_row(str(path), row["label"], f"{row['score']:.3f}",
                      ", ".join(f"{runner.labels[t['index']]} {t['probability']:.3f}" for t in row["top"]))
    console.print(table)


@app.command()
@handle_errors
def verify(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a bundle on this device: file hashes, then the golden images against their recorded outputs."""
    from .bundle.load import verify_bundle
    from .runtimes.base import RunnerOptions

    report = verify_bundle(bundle, RunnerOptions(threads=threads))
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"PASS {bundle}: {report.target} {report.precision}, {report.count} golden images, max |diff| "
                  f"{report.max_abs_diff:.3g} (limit {report.tolerance['max_abs_diff']:g}), top-1 agreement "
                  f"{report.top1_agreement * 100:.0f}%", highlight=False)


@app.command()
@handle_errors
def pack(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Archive to write (.tar.gz)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing archive."),
) -> None:
    """Pack a bundle (its files, hash-checked first) into one .tar.gz to copy to a device."""
    from .bundle.archive import pack_bundle

    path = pack_bundle(bundle, output, force=force)
    console.print(f"packed {bundle} -> {path} ({path.stat().st_size / 1e6:.2f} MB)", highlight=False)


@app.command()
@handle_errors
def unpack(
    archive: Path = typer.Argument(..., help="Archive made by `mait-deploy pack`."),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle folder to create."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
) -> None:
    """Unpack a bundle archive safely: links, absolute or ../ paths and unlisted files are refused; hashes checked."""
    from .bundle.archive import unpack_bundle

    path = unpack_bundle(archive, output, force=force)
    console.print(f"unpacked {archive} -> {path} (hashes checked; run `mait-deploy verify {path}` next)",
                  highlight=False)


@app.command()
@handle_errors
def deploy(
    checkpoint: Optional[str] = typer.Argument(None, help="Checkpoint folder or shipped name (default: the shipped demo)."),
    output: Path = typer.Option(Path("mait-deploy-out"), "-o", "--output", help="Output folder (bundles, reports)."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma list of onnxruntime,openvino,litert,tensorrt (default: every target whose extra is installed)."),
    precisions: str = typer.Option("fp32,fp16,int8", "--precisions", help="Comma list of fp32,fp16,int8."),
    calib: str = typer.Option("fashion-mnist", "--calib", help="Calibration images for int8."),
    calib_count: int = typer.Option(256, "--calib-count", min=1, help="Number of calibration images."),
    eval_data: str = typer.Option("fashion-mnist", "--eval", help="Held-out labelled images for the accuracy gate ('none' to skip)."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", min=1, help="Gate on N images (default: all)."),
    max_accuracy_drop: float = typer.Option(1.0, "--max-accuracy-drop", help="Gate: max top-1 drop in points."),
    profile_batches: str = typer.Option("1,32", "--profile-batches", help="Batch sizes to profile."),
    iterations: int = typer.Option(50, "--iterations", min=1, help="Profiling iterations per batch size."),
    force: bool = typer.Option(False, "--force", help="Redo every stage instead of reusing verified ones."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout."),
) -> None:
    """Checkpoint -> ONNX -> bundles for every target x precision, each gated, verified and profiled; one report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .pipeline import DeployOptions, deploy as run_deploy, markdown_table
    from .profiling.measure import parse_list

    options = DeployOptions(
        targets=tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None,
        precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()), calibration=calib,
        calibration_count=calib_count, evaluation=None if eval_data == "none" else eval_data, eval_count=eval_count,
        max_accuracy_drop=max_accuracy_drop, profile_batches=parse_list(profile_batches, int, "batch"),
        profile_iterations=iterations, force=force)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("deploy", total=1)

        def update(message: str, done: int, total: int) -> None:
            bar.update(task, description=message, completed=done, total=total)

        report = run_deploy(checkpoint, output, options, progress=update)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(markdown_table(report), highlight=False, markup=False, soft_wrap=True)
    console.print(f"reports: {output / 'report.json'}, {output / 'report.md'}, {output / 'report.png'} "
                  f"({report.seconds:.0f} s)", highlight=False)
    failed = [r for r in report.rows if r.status in ("failed", "failed_gate")]
    if failed:
        raise MaitDeployError(f"{len(failed)} of {len(report.rows)} rows failed; see {output / 'report.md'}")


@app.command(name="build-engine")
@handle_errors
def build_engine(
    bundle: Path = typer.Argument(..., help="A tensorrt bundle, on the NVIDIA device."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a valid cached engine exists."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Build (or reuse) the TensorRT engine of a bundle on this device; cached beside the bundle."""
    from .runtimes.tensorrt import build_engine_for_bundle

    with _status() as status:
        status.update("building the TensorRT engine")
        result = build_engine_for_bundle(bundle, force=force)
    if as_json:
        print_json(result)
    else:
        console.print(f"{'built' if result['built'] else 'reused'} {result['engine']} for {result['gpu']} "
                      f"(sm {result['compute_capability']}, TensorRT {result['tensorrt']}) in {result['seconds']} s",
                      highlight=False)


@app.command()
@handle_errors
def profile(
    bundles: list[Path] = typer.Argument(None, help="Bundle folders to profile (or, with --compare, saved reports)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8,32."),
    warmup: int = typer.Option(10, "--warmup", help="Warm-up iterations (reported apart)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Measured iterations (default 100)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Measure for S seconds instead of N iterations."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Runtime threads."),
    percentiles: str = typer.Option("50,90,95,99", "--percentiles", help="Percentiles to report."),
    mode: str = typer.Option("latency", "--mode", help="latency (one call at a time) or throughput (the runtime's async API)."),
    requests: Optional[int] = typer.Option(None, "--requests", help="Throughput mode: inferences in flight."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report(s) to this JSON file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot."),
    compare: bool = typer.Option(False, "--compare", help="Compare saved JSON reports (the arguments) instead of running."),
) -> None:
    """Measure bundles on this device: latency percentiles, throughput, memory, device state (no torch)."""
    from .profiling.measure import ProfileOptions, parse_list, profile_many
    from .profiling.report import load_reports, plot_reports, print_summary, save_reports

    if not bundles:
        raise MaitDeployError("give at least one bundle (or saved reports with --compare)")
    if compare:
        reports = [report for path in bundles for report in load_reports(path)]
    else:
        options = ProfileOptions(
            batches=parse_list(batch, int, "batch"), warmup=warmup,
            iterations=iterations if iterations is not None or duration is not None else 100, duration_s=duration,
            threads=threads, percentiles=parse_list(percentiles, float, "percentile"), mode=mode, requests=requests)
        with _status() as status:
            reports = profile_many(bundles, options, progress=status.update)
        if json_out:
            save_reports(reports, json_out)
    print_summary(reports, console)
    if plot:
        plot_reports(reports, plot)
        console.print(f"plot written to {plot}")
    failed = [r for r in reports if r.error]
    if failed and not compare:
        raise MaitDeployError(f"{len(failed)} of {len(reports)} profile run(s) failed"
                              + (f"; the report was written to {json_out}" if json_out else ""))


if __name__ == "__main__":
    app()
