"""`mait-deploy remote setup|profile`: boards over SSH (host side; needs the 'remote' extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mait_deploy.cli.app import app, console, fail_with_report, handle_errors, print_json, status_spinner
from mait_deploy.device.profiling.measure import parse_list
from mait_deploy.device.signing import load_public_key
from mait_deploy.errors import MaitDeployError
from mait_deploy.host.remote.fleet_report import COLUMNS, failure_line, table_rows
from mait_deploy.host.remote.inventory import load_inventory, select

remote = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Set up boards and run bundles on them over SSH (a fleet at once).")
app.add_typer(remote, name="remote")

INVENTORY = typer.Option(..., "--inventory", "-i", help="YAML inventory of the boards (see docs/remote.md).")
DEVICE = typer.Option(None, "--device", help="Only this device (repeatable).")
TAGS = typer.Option(None, "--tags", help="Only devices with this tag (repeatable).")
ACCEPT_NEW = typer.Option(False, "--accept-new-host-keys",
                          help="Record the host key of a board not yet in its known-hosts file (like OpenSSH "
                               "accept-new); a changed key is always refused.")
MAX_PARALLEL = typer.Option(4, "--max-parallel", min=1, help="Boards worked on at once.")
AS_JSON = typer.Option(False, "--json", help="Print the result as JSON (an error as a JSON object too).")


def _devices(inventory: Path, device: Optional[list[str]], tags: Optional[list[str]]):
    return select(load_inventory(inventory), device or (), tags or ())


@remote.command("setup")
@handle_errors
def setup(
    inventory: Path = INVENTORY,
    device: Optional[list[str]] = DEVICE,
    tags: Optional[list[str]] = TAGS,
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="Install this mait-deploy wheel (default: build one from this checkout)."),
    accept_new: bool = ACCEPT_NEW,
    force: bool = typer.Option(False, "--force", help="Reinstall even where the board's venv is current."),
    max_parallel: int = MAX_PARALLEL,
    as_json: bool = AS_JSON,
) -> None:
    """Create a venv on each board with the device side of mait-deploy and its runtimes (never torch)."""
    from mait_deploy.host.remote.setup import remote_setup

    devices = _devices(inventory, device, tags)
    with status_spinner() as status:
        results = remote_setup(devices, wheel=wheel, accept_new=accept_new, force=force,
                               max_parallel=max_parallel, progress=status.update)
    failed = [r for r in results if r.status == "failed"]
    message = f"{len(failed)} of {len(results)} board(s) failed: {failed[0].device}: {failed[0].reason}" if failed \
        else ""
    if as_json:
        if failed:  # one JSON document: the boards' results with the error in it
            raise fail_with_report([result.to_dict() for result in results], message)
        print_json([result.to_dict() for result in results])
        return
    if failed:
        raise MaitDeployError(message)
    table = Table(title="remote setup")
    for column in ("device", "status", "machine", "python", "runtimes", "seconds"):
        table.add_column(column)
    for result in results:
        board = result.board
        runtimes = ", ".join(f"{name} {info.get('version', '?')}" for name, info in board.get("runtimes", {}).items())
        table.add_row(result.device, result.status if result.status != "failed" else f"failed: {result.reason}",
                      board.get("machine", ""), board.get("python", ""), runtimes,
                      f"{result.steps.get('total', 0):.1f}")
    console.print(table)


@remote.command("profile")
@handle_errors
def profile(
    bundles: list[Path] = typer.Argument(..., help="Bundle folders built on this host."),
    inventory: Path = INVENTORY,
    output: Path = typer.Option(..., "-o", "--output", help="Folder for OUT/<device>/<bundle>/ and the fleet report."),
    device: Optional[list[str]] = DEVICE,
    tags: Optional[list[str]] = TAGS,
    eval_source: Optional[str] = typer.Option(None, "--eval", help="Labelled held-out data to score each bundle on the board ('fashion-mnist', a class folder or an .npz)."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", min=1, help="Draw N images (stratified, seeded) from --eval."),
    eval_seed: int = typer.Option(0, "--eval-seed", help="Seed for --eval-count."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes to profile, e.g. 1,8."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Warm-up iterations."),
    iterations: Optional[int] = typer.Option(None, "--iterations", min=1, help="Measured iterations (default 100)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Measure for S seconds instead."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads on the board."),
    native: bool = typer.Option(False, "--native", help="Also build the native C++ runner on each board (CMake, the board's SDK) and self-test and profile each ONNX Runtime/OpenVINO bundle with it: rows of their own."),
    trust: Optional[Path] = typer.Option(None, "--trust", help="The boards run only bundles signed with this Ed25519 public key (PEM): pushed to each board and set as its trusted key for this run."),
    accept_new: bool = ACCEPT_NEW,
    force: bool = typer.Option(False, "--force", help="Write into an existing fleet output folder."),
    max_parallel: int = MAX_PARALLEL,
    as_json: bool = AS_JSON,
) -> None:
    """Push bundles, then verify, evaluate and profile each on each board; one fleet report (JSON, markdown, plot)."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    if eval_count is not None and eval_source is None:
        raise MaitDeployError("--eval-count needs --eval")
    devices = _devices(inventory, device, tags)

    options = ProfileOptionsRemote(batches=tuple(parse_list(batch, int, "batch")), warmup=warmup,
                                   iterations=iterations if iterations is not None or duration is not None else 100,
                                   duration_s=duration, threads=threads, native=native,
                                   trusted_key=None if trust is None else str(trust))
    if trust is not None:
        load_public_key(trust)
    with status_spinner() as status:
        report = remote_profile(devices, bundles, output, eval_source, eval_count, eval_seed, options,
                                accept_new=accept_new, max_parallel=max_parallel, force=force,
                                progress=status.update)
    failure = failure_line(report, f"the report is in {output}")
    if as_json:
        if failure:
            raise fail_with_report(report.to_dict(), failure)
        print_json(report.to_dict())
        return
    table = Table(title=f"fleet ({report.seconds:.0f} s) -> {output}")
    for column in COLUMNS:
        table.add_column(column)
    for cells in table_rows(report):
        table.add_row(*cells)
    console.print(table)
    if failure:
        raise MaitDeployError(failure)
