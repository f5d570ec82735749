"""``remote profile``: push bundles to each board, then verify, evaluate and profile them there; pull the JSON.

Bundles are content-addressed on the board (``WORK/bundles/<sha of manifest.json>``): a bundle is pushed into a
``.partial`` folder, its hashes are checked on arrival, then it is renamed; a re-run finds it and pushes nothing.
Held-out labelled images (``--eval``) travel as one .npz, also content-addressed, so the on-board top-1 is
measured on exactly the images the host scores the same bundle on.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

import numpy as np

from mait_deploy._io import check_output, sha256_file, write_json
from mait_deploy.config import PreprocessConfig
from mait_deploy.device.accuracy import evaluate_bundle
from mait_deploy.device.board_job import BoardJobResult
from mait_deploy.device.data.sources import load_dataset, require_labels
from mait_deploy.device.manifest import MANIFEST_FILE
from mait_deploy.device.native_app import native_runtimes
from mait_deploy.device.profiling.measure import ProfileReport
from mait_deploy.device.profiling.stats import Latency
from mait_deploy.device.signing import TRUSTED_KEY_ENV
from mait_deploy.errors import RemoteError, ValidationError
from mait_deploy.host.remote.fleet_report import FleetBundle, FleetEvaluation, FleetReport, write_fleet_report
from mait_deploy.host.remote.inventory import Device
from mait_deploy.host.remote.native import device_environment
from mait_deploy.host.remote.parallel import run_on_devices
from mait_deploy.host.remote.push import LocalBundle, ensure_pushed, push_trusted_key, read_bundles
from mait_deploy.host.remote.setup import STAMP
from mait_deploy.host.remote.ssh import Board, last_line
from mait_deploy.results import BoardFacts, BundleRun, GateFigures, Memory, RunnerKind, Status, Verified, batch_key
from mait_deploy.typed_json import decode, encode

OUT_MARKER = ".mait-fleet"


@dataclass
class EvalSet:
    path: Path  # a local .npz (images uint8, labels)
    key: str
    count: int
    origin: str
    host_top1: dict[str, dict[str, object]] = field(default_factory=dict)  # bundle name -> host result or error


@dataclass
class ProfileOptionsRemote:
    """What `profile` measures on each board (the board's own ProfileOptions is built there)."""

    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int | None = 100
    duration_s: float | None = None
    threads: int | None = None
    mode: str = "latency"
    native: bool = False  # also build the native runner on the board, self-test and profile it (its own rows)
    # A public key (host path) the boards must trust for this run: pushed to each board, set as its device
    # setting ($MAIT_TRUSTED_KEY) for the board job and the native runner, so only bundles signed by it run.
    trusted_key: str | None = None

    def job(self) -> dict[str, object]:
        return {"batches": list(self.batches), "warmup": self.warmup, "iterations": self.iterations,
                "duration_s": self.duration_s, "mode": self.mode}


def make_eval_set(source: str, count: int | None, seed: int, bundles: Sequence[LocalBundle], folder: Path,
                  host_scores: bool = True) -> EvalSet:
    """Draw labelled images once for every bundle and board (raw pixels: each runtime preprocesses them itself)."""

    first = bundles[0].manifest
    if any(b.manifest.labels != first.labels for b in bundles):
        raise RemoteError("--eval needs bundles of one model (their labels differ)")
    dataset = load_dataset(source, "evaluation", PreprocessConfig.from_dict(first.preprocess), first.labels,
                           count=count, seed=seed, strict=count is not None,
                           num_classes=first.model["num_classes"])
    require_labels(dataset)
    raw = dataset.raw
    if isinstance(raw, list):
        shapes = {np.asarray(image).shape for image in raw}
        if len(shapes) != 1:
            raise RemoteError(f"{source}: images of {len(shapes)} different sizes; pass them as one .npz "
                              "(images [N, H, W(, C)] uint8, labels [N])")
        raw = np.stack([np.asarray(image) for image in raw])
    path = folder / "eval.npz"
    np.savez(path, images=np.asarray(raw), labels=np.asarray(dataset.labels, dtype=np.int64))
    key = sha256_file(path)[:20]
    eval_set = EvalSet(path, key, len(dataset), dataset.origin)
    if host_scores:
        for bundle in bundles:
            try:
                result = evaluate_bundle(bundle.path, str(path))
                eval_set.host_top1[bundle.name] = {"top1": result.top1, "count": result.count}
            except Exception as err:  # e.g. a TensorRT bundle on a host without a GPU: reported, not fatal
                eval_set.host_top1[bundle.name] = {"error": str(err).splitlines()[0][:200]}
    return eval_set


async def _remote_json(board: Board, argv: list[str], what: str, timeout: float | None = None) -> dict[str, object]:
    done = await board.run(argv, what=what, timeout=timeout, check=False)
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    if done.exit_status != 0 or not isinstance(data, dict):
        raise RemoteError(f"{what} failed: {last_line(done.stderr or done.stdout) or f'exit {done.exit_status}'}")
    return data


def _summarise_profile(row: BundleRun, report: ProfileReport) -> None:
    """The board's profile (read strictly: ProfileReport.from_dict) into the row: the first batch size's latency,
    the peak memory and the board's state after."""
    results = [r for r in report.results if not r.error]
    if report.error or not results:
        raise RemoteError(f"profile failed: {report.error or 'no result'}")
    first = results[0]
    if first.model:
        row.latency = {batch_key(first.batch): Latency.from_stats(first.model)}
    elif first.throughput:  # throughput mode: calls overlap, only images per second mean anything
        row.latency = {batch_key(first.batch): Latency(batch=first.batch, p50_ms=None, p99_ms=None,
                                                       throughput=round(first.throughput.images_per_s, 2))}
    row.memory = Memory(peak_rss_mb=report.memory.peak_rss_mb)
    after = report.device.after
    assert row.board is not None
    row.board.state = {key: after.get(key) for key in ("thermal", "raspberry_pi", "jetson", "load_avg")
                       if after.get(key) not in (None, "not available")}


async def profile_on_device(device: Device, bundles: Sequence[LocalBundle], out: Path,
                            eval_set: EvalSet | None, options: ProfileOptionsRemote, accept_new: bool = False,
                            progress: Callable[[str], None] | None = None) -> list[BundleRun]:
    """Every bundle on one board, one after the other; a bundle's failure is its row, the board's ends them all."""
    work = PurePosixPath(device.workdir)
    python = str(work / "venv" / "bin" / "python")
    rows: list[BundleRun] = []
    clock = time.perf_counter()
    board = await Board.open(device, accept_new=accept_new)
    connect_s = round(time.perf_counter() - clock, 2)
    temporaries: list[str] = []
    async with board:
        try:
            if not await board.exists(str(work / "venv" / STAMP)):
                raise RemoteError(f"{device.name} is not set up; run `mait-deploy remote setup` first")
            machine = (await board.run(["uname", "-m"], what="uname")).stdout.strip()
            for folder in ("bundles", "data", "runs"):
                await board.run(["mkdir", "-p", str(work / folder)], what="creating the work folders")
            # What an earlier run left when its board dropped (one job at a time per board: none is in use now).
            await board.run(["find", str(work / "bundles"), str(work / "data"), "-maxdepth", "1", "-name",
                             "*.partial-*", "-exec", "rm", "-rf", "{}", "+"], what="sweeping stale pushes")
            await board.run(["find", str(work / "runs"), "-mindepth", "1", "-delete"], what="sweeping stale runs")
            eval_remote = None
            if eval_set is not None:
                eval_remote = str(work / "data" / f"{eval_set.key}.npz")
                if not await board.exists(eval_remote):
                    partial = f"{eval_remote}.partial-{secrets.token_hex(4)}"
                    temporaries.append(partial)
                    await board.put(eval_set.path, partial)
                    await board.run(["mv", "-T", partial, eval_remote], what="committing the evaluation data")
                    temporaries.remove(partial)
            trust = await push_trusted_key(board, work, options.trusted_key, temporaries)
            for bundle in bundles:
                facts = BoardFacts(machine=machine, steps={"connect": connect_s})
                row = _row(device.name, bundle, RunnerKind.PYTHON, facts)
                if eval_set is not None:
                    host_top1 = eval_set.host_top1.get(bundle.name, {}).get("top1")
                    facts.host_top1 = host_top1 if isinstance(host_top1, float) else None
                rows.append(row)
                if bundle.runtime not in device.runtimes:
                    row.status = Status.SKIPPED
                    row.reason = f"needs {bundle.runtime}; {device.name} has {', '.join(device.runtimes)}"
                    continue
                if progress:
                    progress(f"{device.name}: {bundle.name}")
                try:
                    await _bundle_on_board(board, bundle, row, work, python, eval_remote, options, out,
                                           temporaries, trust)
                    row.status = Status.OK
                except RemoteError as err:
                    row.reason = str(err)
                if options.native:
                    rows.append(await _native_row(board, bundle, row, work, python, options, temporaries,
                                                  progress, trust))
        finally:
            for path in list(temporaries):
                await board.remove_tree(path)
            await board.protect(str(work))
    return rows


async def _native_row(board: Board, bundle: LocalBundle, python_row: BundleRun, work: PurePosixPath, python: str,
                      options: ProfileOptionsRemote, temporaries: list[str],
                      progress: Callable[[str], None] | None, trust: str | None = None) -> BundleRun:
    """The bundle through the native runner built on the board (remote/native.py): a row of its own."""
    from mait_deploy.host.remote.native import ensure_built, native_on_board

    assert python_row.board is not None
    facts = BoardFacts(machine=python_row.board.machine)
    row = _row(python_row.where, bundle, RunnerKind.NATIVE, facts)
    if bundle.runtime not in native_runtimes():
        row.status, row.reason = Status.SKIPPED, f"no native runner for {bundle.runtime} (docs/native.md)"
        return row
    if python_row.board.pushed is None:  # the bundle never reached the board
        row.status, row.reason = Status.SKIPPED, "the bundle is not on the board (see its python row)"
        return row
    if progress:
        progress(f"{board.device.name}: {bundle.name} (native)")
    try:
        build, seconds = await ensure_built(board, work, bundle.runtime, python, temporaries)
        facts.steps["build"] = seconds
        await native_on_board(board, build, str(work / "bundles" / bundle.key), row, options, trust)
        row.status = Status.OK
    except RemoteError as err:
        row.reason = str(err)
    return row


def _row(where: str, bundle: LocalBundle, runner: RunnerKind, board: BoardFacts) -> BundleRun:
    """A board x bundle x runner row, failed until it ran; the gate's figures from the bundle's manifest."""
    gate = bundle.manifest.accuracy
    return BundleRun(target=bundle.manifest.target, precision=bundle.manifest.precision, status=Status.FAILED,
                     where=where, runner=runner, bundle=bundle.name,
                     gate=None if gate is None else GateFigures.of(gate), size_bytes=bundle.manifest.size_bytes,
                     cpp_app=bundle.runtime in native_runtimes(), board=board)


async def _bundle_on_board(board: Board, bundle: LocalBundle, row: BundleRun, work: PurePosixPath, python: str,
                           eval_remote: str | None, options: ProfileOptionsRemote, out: Path,
                           temporaries: list[str], trust: str | None = None) -> None:
    """Push (if needed), then verify + evaluate + profile in one process on the board; pull its JSON."""
    local = out / board.device.name / bundle.name
    local.mkdir(parents=True, exist_ok=True)
    remote = str(work / "bundles" / bundle.key)
    clock = time.perf_counter()
    assert row.board is not None
    row.board.pushed = await ensure_pushed(board, bundle, work / "bundles", python, temporaries)
    row.board.steps["push"] = round(time.perf_counter() - clock, 2)
    environment = await device_environment(board, bundle.runtime, work, python, temporaries, row.board.steps)
    if trust is not None:
        environment = ["env", f"{TRUSTED_KEY_ENV}={trust}", *environment[1:]]
    report_remote = str(work / "runs" / f"{bundle.key}-{secrets.token_hex(4)}.json")
    temporaries.append(report_remote)
    request = {"bundle": remote, "eval_data": eval_remote, "profile": options.job(), "profile_json": report_remote,
               "threads": options.threads}
    result = await _remote_json(board, [*environment, python, "-m", "mait_deploy.device.board_job",
                                        json.dumps(request)], f"{bundle.name} on the board")
    job = decode(BoardJobResult, result, f"{bundle.name}'s board job")
    row.board.steps.update(job.seconds)
    if job.verify is not None:
        row.verify = Verified.of(job.verify)
        write_json(local / "verify.json", job.verify.to_dict())
    if job.accuracy is not None:
        row.board.top1 = job.accuracy.top1
        write_json(local / "accuracy.json", job.accuracy.to_dict())
    if "profile" not in job.errors or await board.exists(report_remote):
        with tempfile.TemporaryDirectory() as tmp:
            fetched = Path(tmp) / "profile.json"
            await board.get(report_remote, fetched)
            data = json.loads(fetched.read_text())
        write_json(local / "profile.json", data)
        try:
            _summarise_profile(row, ProfileReport.from_dict(data["reports"][0]))
        except (RemoteError, ValidationError, KeyError, IndexError, TypeError) as err:
            job.errors.setdefault("profile", f"the board's profile: {err}")
    await board.remove_tree(report_remote)
    temporaries.remove(report_remote)
    if job.errors:
        step, message = next(iter(job.errors.items()))
        raise RemoteError(f"{step}: {message}")


def remote_profile(devices: Sequence[Device], bundle_paths: Sequence[Path], out: Path,
                   eval_source: str | None = None, eval_count: int | None = None, eval_seed: int = 0,
                   options: ProfileOptionsRemote | None = None, accept_new: bool = False, max_parallel: int = 4,
                   force: bool = False, progress: Callable[[str], None] | None = None) -> FleetReport:
    """Profile every bundle on every device (boards in parallel); write OUT/<device>/<bundle>/ and the fleet report.

    ``out`` must be new, or (with ``force``) a folder an earlier fleet run wrote."""
    bundles = read_bundles(bundle_paths)
    out = Path(out)
    check_output(out, force, kind="dir", what="fleet output",
                 ours=lambda p: None if (p / OUT_MARKER).is_file() else f"it has no {OUT_MARKER}")
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text("written by mait-deploy remote profile\n")
    options = options or ProfileOptionsRemote()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mait-remote-") as tmp:
        eval_set = None
        if eval_source is not None:
            if progress:
                progress("drawing the evaluation images and scoring them on this host")
            eval_set = make_eval_set(eval_source, eval_count, eval_seed, bundles, Path(tmp))

        device_seconds: dict[str, float] = {}

        async def job(device: Device) -> list[BundleRun]:
            clock = time.perf_counter()
            try:
                return await profile_on_device(device, bundles, out, eval_set, options, accept_new, progress)
            finally:
                device_seconds[device.name] = round(time.perf_counter() - clock, 2)

        def failed(device: Device, reason: str) -> list[BundleRun]:
            rows = [_row(device.name, bundle, runner, BoardFacts()) for bundle in bundles
                    for runner in RunnerKind if runner is RunnerKind.PYTHON
                    or (options.native and bundle.runtime in native_runtimes())]
            for row in rows:
                row.reason = reason
            return rows

        per_device = run_on_devices(devices, job, failed, max_parallel=max_parallel)
    rows = [row for device_rows in per_device for row in device_rows]
    report = FleetReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=round(time.perf_counter() - started, 2),
        device_seconds=device_seconds, devices=[d.to_dict() for d in devices],
        bundles=[FleetBundle(name=b.name, target=b.manifest.target, precision=b.manifest.precision,
                             sha256=b.files[MANIFEST_FILE], cpp_app=b.runtime in native_runtimes()) for b in bundles],
        evaluation=None if eval_set is None else FleetEvaluation(eval_set.origin, eval_set.count, eval_set.host_top1),
        profile_options=dict(encode(options)), rows=rows)
    write_fleet_report(report, out)
    return report
