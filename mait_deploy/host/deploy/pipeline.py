"""deploy(): checkpoint -> export -> compile (each target x precision) -> accuracy gate -> verify -> profile: one
report.

Every row ends as ok, failed the accuracy gate (with the numbers), failed (with the reason) or skipped (with the
reason): one failure never stops the run. Finished, verified stages are reused when their inputs (hashed: the
checkpoint, the tools, the options and the content of the data) are unchanged; ``force`` redoes everything.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from mait_deploy import __version__, backends
from mait_deploy._io import content_key, jsonable, read_json, sha256_file, write_json
from mait_deploy.device.bundle import load_bundle, verify_runner
from mait_deploy.device.manifest import Manifest, check_files, read_manifest
from mait_deploy.device.profiling.measure import ProfileOptions, profile
from mait_deploy.device.profiling.state import cpu_state
from mait_deploy.device.runner import Runner
from mait_deploy.device.signing import sign_bundle
from mait_deploy.errors import MaitDeployError, UnsupportedOption
from mait_deploy.host import catalog
from mait_deploy.host.compile.api import DEFAULT_DATA, check_data, load_data
from mait_deploy.host.compile.gate import DEFAULT_MAX_DROP
from mait_deploy.host.compile.source import source_from_export
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.deploy.devices import run_on_devices
from mait_deploy.host.deploy.race import race, recommend_rows
from mait_deploy.host.deploy.report import REPORT_SCHEMA_VERSION, DeployReport, write_deploy_report
from mait_deploy.host.export.onnx import ExportOptions, export_onnx, tool_versions
from mait_deploy.host.jobs.executors import check_executor_options, executor_for
from mait_deploy.host.jobs.job import BuildJob, BuildOutcome, build_inputs, land
from mait_deploy.host.model.zoo import resolve_checkpoint
from mait_deploy.precision import INT8, PORTABLE_PRECISIONS, PRECISIONS, Precision, check_precisions
from mait_deploy.results import BundleRun, GateFigures, Status, Verified, profile_figures

STATE_FILE = "state.json"
RECOMMEND_FOR = ("python", "native")


@dataclass(frozen=True)
class DeployOptions:
    targets: tuple[str, ...] | None = None  # None: every target whose extras are installed
    precisions: tuple[Precision, ...] = PRECISIONS
    calibration: str = DEFAULT_DATA
    calibration_count: int = CalibrationOptions.count
    evaluation: str | None = DEFAULT_DATA  # None skips the accuracy gate
    eval_count: int | None = None
    max_accuracy_drop: float = DEFAULT_MAX_DROP
    # Each gate on a fixed sample first; the full set only where the sample leaves the decision open (gate.py).
    gate_sample: int | None = 2000
    profile_batches: tuple[int, ...] = (1, 32)
    profile_iterations: int = 50
    force: bool = False
    inventory: str | None = None  # run the bundles that passed on these boards too (host/deploy/devices.py)
    device_eval_count: int | None = None  # images scored on each board (default: the gate's --eval-count)
    devices: tuple[str, ...] = ()
    device_tags: tuple[str, ...] = ()
    accept_new_host_keys: bool = False
    sign_key: str | None = None  # an Ed25519 private key (PEM): sign every bundle that passed (device/signing.py)
    # What the recommendation is for: "python" (any bundle, run by the Python device side) or "native" (only
    # bundles the C++ runner can run: an app links the pick).
    recommend_for: str = "python"
    # Where the builds run (host/jobs/executors.py): worker processes here (None: one per core that fits in free
    # memory; 1: one after the other in this process), or a Ray cluster's address ("auto": the running one).
    jobs: int | None = None
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.targets is not None:
            known = backends.names()
            unknown = [t for t in self.targets if t not in known]
            if unknown:
                raise UnsupportedOption(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
            if not self.targets:
                raise UnsupportedOption("no targets given")
        check_precisions(self.precisions)
        if self.max_accuracy_drop < 0:
            raise UnsupportedOption("--max-accuracy-drop must be >= 0")
        if self.gate_sample is not None and (isinstance(self.gate_sample, bool) or self.gate_sample < 100):
            raise UnsupportedOption(f"--gate-sample must be at least 100 images (0: every gate on the full set), "
                                    f"got {self.gate_sample}")
        if self.profile_iterations < 1 or any(b < 1 for b in self.profile_batches):
            raise UnsupportedOption("profile iterations and batches must be positive")
        check_executor_options(self.jobs, self.cluster)
        if self.recommend_for not in RECOMMEND_FOR:
            raise UnsupportedOption(f"--for must be one of {', '.join(RECOMMEND_FOR)}, got {self.recommend_for!r}")


def _stage_key(**parts: Any) -> str:
    return content_key(parts)


def _checkpoint_identity(checkpoint: Any) -> tuple[Path, dict[str, object]]:
    from mait_deploy.host.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    path = resolve_checkpoint(checkpoint)
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_FILE if path.is_dir() else path
    config = folder / CONFIG_FILE
    return path, {"path": str(path), "weights_sha256": sha256_file(weights),
                  "config_sha256": sha256_file(config) if config.is_file() else None}


class _State:
    """What a previous run finished (stage -> key of its inputs), kept in ``state.json``."""

    def __init__(self, out_dir: Path, fresh: bool) -> None:
        self.path = out_dir / STATE_FILE
        self.data: dict[str, object] = {}
        if not fresh and self.path.is_file():
            try:
                loaded = read_json(self.path, what="deploy state")
                self.data = loaded if isinstance(loaded, dict) else {}
            except (OSError, MaitDeployError):
                self.data = {}  # unreadable: nothing is reused, everything is rebuilt

    def bundle_key(self, name: str) -> str | None:
        bundles = self.data.get("bundles")
        return bundles.get(name) if isinstance(bundles, dict) else None

    def set_bundle(self, name: str, key: str | None) -> None:
        bundles = self.data.get("bundles")
        if not isinstance(bundles, dict):
            bundles = self.data["bundles"] = {}
        if key is None:
            bundles.pop(name, None)
        else:
            bundles[name] = key
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def _export(checkpoint_path: Path, identity: dict[str, object], out_dir: Path, state: _State) -> tuple[Any, bool, str]:
    """The verified FP32 ONNX in ``out_dir`` (reused when the checkpoint and the tools are unchanged)."""
    from mait_deploy.host.model.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint_path)
    onnx_path = out_dir / "model.onnx"
    report_path = onnx_path.with_name(onnx_path.name + ".json")
    key = _stage_key(stage="export", checkpoint=identity, version=__version__, tools=tool_versions())
    reused = (state.data.get("export") == key and onnx_path.is_file() and report_path.is_file()
              and state.data.get("export_sha256") == sha256_file(onnx_path))
    if reused:
        report = read_json(report_path, what="export report")
    else:
        report = export_onnx(model, onnx_path, ExportOptions(force=True)).to_dict()
        state.data.update(export=key, export_sha256=sha256_file(onnx_path))
        state.save()
    return source_from_export(model, onnx_path, report), reused, key


def _reusable(bundle: Path, state: _State, key: str) -> Manifest | None:
    """The manifest of a finished bundle built from the same inputs whose files still match it, else None."""

    if state.bundle_key(bundle.name) != key or not bundle.is_dir():
        return None
    try:
        manifest = read_manifest(bundle)
        check_files(bundle, manifest)
    except MaitDeployError:
        return None
    return manifest


def _skip_reason(target_name: str, precision: str, availability: dict[str, str]) -> str:
    """Why this row is not built here ("" when it is)."""
    if availability.get(target_name):
        return availability[target_name]
    return catalog.target(target_name).cannot_build_here(CompileOptions(precision=precision)) or ""


def _finish_row(row: BundleRun, bundle: Path, key: str, built: BuildOutcome | Manifest, options: DeployOptions,
                state: _State, runners: dict[str, Runner]) -> None:
    """Take a build's outcome (or the manifest of the bundle reused as it was), then verify and profile the bundle
    here; every outcome is a row. The bundle is opened once and its runner is left in ``runners`` for the race."""

    started = time.perf_counter()
    outcome = built if isinstance(built, BuildOutcome) else None
    try:
        if outcome is not None:
            if outcome.status == "failed_gate":
                row.status, row.reason = Status.FAILED_GATE, outcome.reason
                row.gate = None if outcome.gate is None else GateFigures.of(outcome.gate, options.gate_sample)
                return
            if outcome.status != "ok":
                row.status, row.reason = Status.FAILED, outcome.reason
                return
        manifest = built if isinstance(built, Manifest) else land(built, bundle)
        row.bundle = str(bundle)
        row.size_bytes = manifest.size_bytes
        row.gate = None if manifest.accuracy is None else GateFigures.of(manifest.accuracy, options.gate_sample)
        reused = manifest.build.get("gate_reused")
        gate_note = f"the gate of {reused['from']} ({reused['why']})" if reused else ""
        runnable, why = catalog.target(row.target).host_can_run()
        if runnable:
            # Hashed just now (reused, or unpacked from its job's archive): not hashed again.
            runner = runners[str(bundle)] = load_bundle(bundle, check_hashes=False)
            # A fixed-batch bundle (LiteRT) is profiled at its own batch size only. Profiled first: it measures
            # the runtime's load.
            batches = options.profile_batches if manifest.batch == "dynamic" else (int(manifest.batch),)
            report = profile(runner, ProfileOptions(batches=batches, warmup=5, iterations=options.profile_iterations,
                                                    end_to_end=False))
            if report.error:
                raise MaitDeployError(f"profiling failed: {report.error}")
            row.latency, row.memory = profile_figures(report)
            row.verify = Verified.of(verify_runner(runner))
            row.status, row.reason = Status.OK, gate_note
        else:
            row.reason = f"bundle built; {why}" + (f"; {gate_note}" if gate_note else "")
        state.set_bundle(bundle.name, key)  # only a bundle that was built, verified and profiled is reused
    except MaitDeployError as err:
        row.status, row.reason = Status.FAILED, str(err)
    except Exception as err:  # a runtime crash must not stop the other rows
        row.status, row.reason = Status.FAILED, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        row.seconds = round((outcome.seconds if outcome else 0.0) + time.perf_counter() - started, 1)


def _in_matrix(target_name: str, precision: str, options: DeployOptions, availability: dict[str, str]) -> bool:
    """Whether a target x precision gets a row. The portable precisions always do (a skipped row says why not);
    a hardware precision (BF16) only where the target offers it and this machine computes it, unless asked for by
    name (then its row says why not)."""
    if precision in PORTABLE_PRECISIONS or options.precisions != DeployOptions.precisions:
        return True
    return not _skip_reason(target_name, precision, availability)


def deploy(checkpoint: Any, out_dir: str | os.PathLike[str], options: DeployOptions | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> DeployReport:
    """Run the whole pipeline into ``out_dir`` and write report.json, report.md and report.png there."""
    from mait_deploy.device.profiling.isa import cpu_isa

    options = options or DeployOptions()
    started = time.perf_counter()
    availability = backends.availability()
    targets = options.targets or tuple(t for t in backends.names() if not availability[t])
    plan = [(t, p) for t in targets for p in options.precisions if _in_matrix(t, p, options, availability)]
    calibration_source = options.calibration if any(p == INT8 for _, p in plan) else None
    check_data(calibration_source, options.evaluation)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _State(out_dir, fresh=options.force)
    total = len(plan) + 1
    step = progress or (lambda message, done, total: None)

    step("export", 0, total)
    checkpoint_path, identity = _checkpoint_identity(checkpoint)
    source, reused_export, export_key = _export(checkpoint_path, identity, out_dir, state)
    calibration, evaluation = load_data(
        source, calibration_source,
        CalibrationOptions(count=options.calibration_count), options.evaluation, options.eval_count)
    data_key = {"calibration": calibration.content_sha256() if calibration else None,
                "evaluation": evaluation.content_sha256() if evaluation else None}

    rows: list[BundleRun] = []
    # The rows built (or reused) here: row, bundle folder, stage key, the reused bundle's manifest (None: built).
    planned: list[tuple[BundleRun, Path, str, Manifest | None]] = []
    jobs: list[BuildJob] = []
    for target_name, precision in plan:
        row = BundleRun(target=target_name, precision=precision, status=Status.SKIPPED,
                        reason=_skip_reason(target_name, precision, availability),
                        cpp_app=bool(backends.get(target_name).native.sdk))
        rows.append(row)
        if row.reason:
            continue
        key = _stage_key(stage="bundle", checkpoint=identity, target=target_name, precision=precision,
                         data=data_key, calibration_count=options.calibration_count,
                         max_drop=options.max_accuracy_drop, export=export_key, gate_sample=options.gate_sample)
        bundle = out_dir / "bundles" / f"{target_name}-{precision}"
        reusable = _reusable(bundle, state, key)
        planned.append((row, bundle, key, reusable))
        row.reused = reusable is not None
        if not row.reused:
            state.set_bundle(bundle.name, None)
            jobs.append(BuildJob(bundle.name, target_name, precision, CompileOptions(
                precision=precision, max_accuracy_drop=options.max_accuracy_drop,
                calibration=CalibrationOptions(count=options.calibration_count), force=True,
                gate_sample=options.gate_sample)))
    outcomes: dict[str, BuildOutcome] = {}
    if jobs:
        executor = executor_for(options.jobs, options.cluster, len(jobs))
        inputs = build_inputs(source, calibration, evaluation)
        finished = [0]

        def done(outcome: BuildOutcome) -> None:
            finished[0] += 1
            step(f"{outcome.name}: {outcome.status} ({outcome.seconds:.0f} s)", finished[0], total)

        step(f"building {len(jobs)} bundle(s) on {executor.name}", 1, total)
        outcomes = {o.name: o for o in executor.run(jobs, {"model": inputs}, done,
                                                    progress=lambda message: step(message, finished[0] + 1, total))}
    runners: dict[str, Runner] = {}  # bundle -> its open runner, from its row to the race
    try:
        for row, bundle, key, reusable in planned:  # verified and profiled here, after every build is done
            step(f"verifying and profiling {bundle.name}", total, total)
            _finish_row(row, bundle, key, reusable or outcomes[bundle.name], options, state, runners)
        step("timing the bundles side by side", total, total)
        timing = race(rows, runners)
    finally:
        for runner in runners.values():
            runner.close()
    recommended = recommend_rows(rows, timing, native_only=options.recommend_for == "native")
    if options.sign_key:  # before the boards run them: a board that trusts the key runs only signed bundles

        for row in rows:
            if row.ok and row.bundle:
                sign_bundle(row.bundle, options.sign_key)
    on_devices = None
    if options.inventory:
        step("running the bundles on the boards", total, total)
        on_devices = run_on_devices(rows, out_dir, options.inventory, options.devices, options.device_tags,
                                    options.evaluation, options.device_eval_count or options.eval_count,
                                    options.profile_batches,
                                    options.profile_iterations, options.max_accuracy_drop,
                                    options.accept_new_host_keys, native_only=options.recommend_for == "native")
    report = DeployReport(
        schema_version=REPORT_SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        checkpoint=identity, options=jsonable(asdict(options)),
        export={"path": str(source.onnx_path), "reused": reused_export, "parity": source.export_report.get("parity"),
                "mask_constants": source.export_report.get("graph", {}).get("mask_constants")},
        rows=rows, recommended=recommended, machine={"cpu": cpu_state(), "isa": cpu_isa()},
        side_by_side=timing, devices=on_devices,
        seconds=round(time.perf_counter() - started, 1),
    )
    write_deploy_report(report, out_dir)
    return report
