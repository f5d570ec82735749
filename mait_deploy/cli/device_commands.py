"""Device commands: evaluate, predict, verify, pack, app, unpack, profile (numpy + the bundle's runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mait_deploy._io import write_json
from mait_deploy.cli.app import app, console, handle_errors, print_json, status_spinner
from mait_deploy.device.archive import pack_bundle, unpack_bundle
from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.native_app import generate_app
from mait_deploy.device.native_library import LIBRARY_ENV
from mait_deploy.device.profiling.layers import plot_layers, profile_layers
from mait_deploy.device.profiling.measure import ProfileOptions, parse_list, profile_many
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.device.signing import TRUSTED_KEY_ENV, generate_keys, load_public_key, sign_bundle
from mait_deploy.errors import MaitDeployError, printable
from mait_deploy.host.evaluate import evaluate as evaluate_any
from mait_deploy.options import MAX_THREADS

# Device settings every command that runs a bundle takes (each also an environment variable, so a board keeps it).
THREADS = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="Runtime threads.")
TRUST = typer.Option(None, "--trust", help="Run only bundles signed with this Ed25519 public key (PEM); default: $MAIT_TRUSTED_KEY.")
NATIVE_LIBRARY = typer.Option(None, "--native-library", help="ExecuTorch bundles: run through this libmait_runner_c.so (or a folder holding it); default: $MAIT_NATIVE_LIBRARY.")


def device_settings(trust: Optional[Path], native_library: Optional[Path]) -> None:
    """--trust and --native-library for this process and what it starts: they are device settings (the
    environment), never a bundle's, and every runner this command opens honours them."""
    import os

    if trust is not None:
        load_public_key(trust)  # a wrong key is a usage error now, not a refusal of every bundle later
        os.environ[TRUSTED_KEY_ENV] = str(trust.resolve())
    if native_library is not None:
        os.environ[LIBRARY_ENV] = str(native_library.resolve())


@app.command()
@handle_errors
def evaluate(
    model: Optional[str] = typer.Argument(None, help="Bundle folder, exported .onnx, checkpoint folder or shipped name (default: the shipped model)."),
    data: str = typer.Option("fashion-mnist", "--data", help="Labelled data: 'fashion-mnist' (test split), a folder with class sub-folders, or an .npz with labels."),
    count: Optional[int] = typer.Option(None, "--count", help="Evaluate on N images drawn (stratified, seeded) from the data."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing --count images."),
    trust: Optional[Path] = TRUST,
    native_library: Optional[Path] = NATIVE_LIBRARY,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Top-1 accuracy of a bundle (device runtime), an .onnx (ONNX Runtime) or a checkpoint (PyTorch) on labelled data."""

    device_settings(trust, native_library)
    result = evaluate_any(model, data, count, seed)
    if as_json:
        print_json(result.to_dict())
    else:
        console.print(f"top-1 {result.top1 * 100:.2f}% ({result.correct}/{result.count}) of {result.model} on "
                      f"{result.data} in {result.seconds:.1f} s", highlight=False)


@app.command()
@handle_errors
def predict(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    images: list[Path] = typer.Argument(..., help="Image files (png/jpg/bmp) or folders of them."),
    top: int = typer.Option(1, "--top", min=1, help="Show the top K classes."),
    threads: Optional[int] = THREADS,
    trust: Optional[Path] = TRUST,
    native_library: Optional[Path] = NATIVE_LIBRARY,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classify images with a bundle (numpy + the bundle's runtime only)."""

    device_settings(trust, native_library)
    with load_bundle(bundle, RunnerOptions(threads=threads)) as runner:
        prediction = runner.predict_files(images)
    images = [Path(p) for p in prediction.files]
    rows = prediction.to_list(top=top)
    # File names and labels are escaped (control characters, non-UTF-8 bytes as \xNN): a name cannot forge a
    # line, and the JSON stays valid UTF-8.
    for row in rows:
        row["label"] = printable(row["label"])
        for entry in row["top"]:
            entry["label"] = printable(entry["label"])
    if as_json:
        print_json({"bundle": printable(str(bundle)), "inference_ms": prediction.inference_ms,
                    "preprocess_ms": prediction.preprocess_ms,
                    "predictions": [{"image": printable(str(p)), **row} for p, row in zip(images, rows)]})
        return
    table = Table(title=f"{printable(str(bundle))} ({prediction.inference_ms:.2f} ms inference, "
                        f"{prediction.preprocess_ms:.2f} ms preprocessing)")
    for column in ("image", "label", "score", f"top {top}"):
        table.add_column(column, overflow="fold")
    for path, row in zip(images, rows):
        table.add_row(printable(str(path)), row["label"], f"{row['score']:.3f}",
                      ", ".join(f"{t['label']} {t['probability']:.3f}" for t in row["top"]))
    console.print(table)


@app.command()
@handle_errors
def verify(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    threads: Optional[int] = THREADS,
    trust: Optional[Path] = TRUST,
    native_library: Optional[Path] = NATIVE_LIBRARY,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a bundle on this device: its signature (with --trust), file hashes, then the golden images against
    their recorded outputs."""

    device_settings(trust, native_library)
    report = verify_bundle(bundle, RunnerOptions(threads=threads))
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"PASS {printable(str(bundle))}: {report.target} {report.precision}, {report.count} golden images, max |diff| "
                  f"{report.max_abs_diff:.3g} (limit {report.tolerance['max_abs_diff']:g}), top-1 agreement "
                  f"{report.top1_agreement * 100:.0f}%", highlight=False)
    console.print(report.calibration(), highlight=False)
    if report.tolerance_basis:
        console.print(f"the {report.precision} tolerance allows for {report.tolerance_basis}", highlight=False)
    if report.isa_note:
        console.print(f"note: {report.isa_note}", highlight=False)


@app.command()
@handle_errors
def pack(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Archive to write (.tar.gz)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing archive."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pack a bundle (its files, hash-checked first) into one .tar.gz to copy to a device."""

    path = pack_bundle(bundle, output, force=force)
    if as_json:
        print_json({"bundle": str(bundle), "archive": str(path), "bytes": path.stat().st_size})
        return
    console.print(f"packed {bundle} -> {path} ({path.stat().st_size / 1e6:.2f} MB)", highlight=False)


@app.command(name="app")
@handle_errors
def native_app(
    bundle: Path = typer.Argument(..., help="Bundle folder (ONNX Runtime or OpenVINO)."),
    output: Path = typer.Option(..., "-o", "--output", help="Project folder to create."),
    force: bool = typer.Option(False, "--force", help="Replace a project folder this command wrote."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate a native C++ project (CMake) that runs the bundle and self-tests it against its golden set."""

    project = generate_app(bundle, output, force=force)
    if as_json:
        print_json(project.to_dict())
        return
    console.print(f"wrote {project.folder}: the native runner for {project.bundle} ({project.runtime}, "
                  f"{project.precision}); build and self-test it on the device with:\n  {project.build}",
                  highlight=False, markup=False)


@app.command()
@handle_errors
def unpack(
    archive: Path = typer.Argument(..., help="Archive made by `mait-deploy pack`."),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle folder to create."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Unpack a bundle archive safely: links, absolute or ../ paths and unlisted files are refused; hashes checked."""

    path = unpack_bundle(archive, output, force=force)
    if as_json:
        print_json({"archive": str(archive), "bundle": str(path), "hashes_checked": True})
        return
    console.print(f"unpacked {archive} -> {path} (hashes checked; run `mait-deploy verify {path}` next)",
                  highlight=False)


@app.command()
@handle_errors
def profile(
    bundles: list[Path] = typer.Argument(None, help="Bundle folders to profile (or, with --compare, saved reports)."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8,32."),
    warmup: int = typer.Option(10, "--warmup", min=0, max=100_000, help="Warm-up iterations (reported apart)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, max=1_000_000, help="Measured iterations (default 100)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.001, max=86_400, help="Measure for S seconds instead of N iterations."),
    threads: Optional[int] = THREADS,
    trust: Optional[Path] = TRUST,
    native_library: Optional[Path] = NATIVE_LIBRARY,
    percentiles: str = typer.Option("50,90,95,99", "--percentiles", help="Percentiles to report."),
    mode: str = typer.Option("latency", "--mode", help="latency (one call at a time) or throughput (the runtime's async API)."),
    requests: Optional[int] = typer.Option(None, "--requests", help="Throughput mode: inferences in flight."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report(s) to this JSON file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot."),
    compare: bool = typer.Option(False, "--compare", help="Compare saved JSON reports (the arguments) instead of running."),
    layers: bool = typer.Option(False, "--layers", help="Per-layer profile instead: the runtime's own per-operation times mapped to the model's parts (patch embed, each block's attention and MLP, head) and op kinds, and which ran in int8/bf16/float."),
) -> None:
    """Measure bundles on this device: latency percentiles, throughput, memory, device state (no torch)."""
    from mait_deploy.device.profiling.report import (
        load_reports,
        plot_reports,
        print_summary,
        save_reports,
    )

    if not bundles:
        raise MaitDeployError("give at least one bundle (or saved reports with --compare)")
    device_settings(trust, native_library)
    if layers:
        given = [flag for flag, value in (("--compare", compare), ("--duration", duration is not None),
                                          ("--requests", requests is not None), ("--mode", mode != "latency"))
                 if value]
        if given:
            raise MaitDeployError(f"--layers takes --batch, --iterations, --warmup, --threads, --json and --plot; "
                                  f"not {', '.join(given)}")
        _profile_layers(bundles, parse_list(batch, int, "batch"), iterations or 50, warmup, threads, json_out, plot)
        return
    if compare:
        reports = [report for path in bundles for report in load_reports(path)]
    else:
        options = ProfileOptions(
            batches=parse_list(batch, int, "batch"), warmup=warmup,
            iterations=iterations if iterations is not None or duration is not None else 100, duration_s=duration,
            threads=threads, percentiles=parse_list(percentiles, float, "percentile"), mode=mode, requests=requests)
        with status_spinner() as status:
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


def _profile_layers(bundles: list[Path], batches: list[int], iterations: int, warmup: int, threads: Optional[int],
                    json_out: Optional[Path], plot: Optional[Path]) -> None:
    """`profile --layers`: one table per bundle x batch (time per model part, its top op kinds)."""

    profiles = []
    with status_spinner() as status:
        for bundle in bundles:
            with load_bundle(bundle, RunnerOptions(threads=threads)) as runner:
                for size in batches:
                    status.update(f"{bundle}: per-layer profile at batch {size}")
                    profiles.append(profile_layers(runner, size, iterations, warmup))
    for profile in profiles:
        shares = ", ".join(f"{k} {v / profile.total_ms * 100:.0f}%" for k, v in profile.by_precision.items())
        table = Table(title=f"{profile.bundle} ({profile.runtime}, batch {profile.batch}): {profile.total_ms:.3f} ms "
                            f"per inference in ops under the profiler (a plain call: {profile.call_ms:.3f} ms); "
                            f"{shares}")
        for column in ("part", "ms", "share", "top op kinds"):
            table.add_column(column)
        for part in profile.parts:
            kinds = sorted(part.by_kind.items(), key=lambda kv: -kv[1])[:3]
            table.add_row(part.part, f"{part.ms:.3f}", f"{part.share * 100:.1f}%",
                          ", ".join(f"{kind} {ms:.3f}" for kind, ms in kinds))
        console.print(table)
    if json_out:
        write_json(json_out, {"schema": "mait-deploy.layer-profile", "schema_version": 1,
                              "profiles": [profile.to_dict() for profile in profiles]})
        console.print(f"report written to {json_out}", highlight=False, markup=False)
    if plot:
        plot_layers(profiles, plot)
        console.print(f"plot written to {plot}", highlight=False, markup=False)


@app.command()
@handle_errors
def keygen(
    output: Path = typer.Option(..., "-o", "--output", help="Private key to write (PEM); the public key goes to OUTPUT.pub."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Make an Ed25519 key pair for signing bundles (compile/deploy --sign KEY; devices --trust KEY.pub)."""

    private, public = generate_keys(output, force=force)
    if as_json:
        print_json({"private_key": str(private), "public_key": str(public)})
        return
    console.print(f"wrote {private} (keep it on the build host) and {public} (give it to devices: --trust or "
                  f"$MAIT_TRUSTED_KEY)", highlight=False)


@app.command()
@handle_errors
def sign(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Sign a bundle (its files are hash-checked first): writes manifest.sig, a DSSE envelope over manifest.json."""

    path = sign_bundle(bundle, key)
    if as_json:
        print_json({"bundle": printable(str(bundle)), "signature": str(path)})
        return
    console.print(f"signed {printable(str(bundle))}: {path.name}", highlight=False)
