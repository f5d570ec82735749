"""Compile every model for each target and precision, then time them side by side in one process.

Per (target, precision, batch) every model's bundle is loaded at once and timed with the library's block method
(mait_deploy.device.profiling.side_by_side: rounds of consecutive calls per model, first call of each block
dropped, order reversed every round), so a ratio between two models is the median of per-round ratios measured
under the same machine state, with its min and max. Bundles are built without the accuracy gate: random-weight
variants and baselines have no accuracy to keep (deploy gates trained checkpoints).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mait_deploy import backends
from mait_deploy._io import _temp_prefix, atomic_dir, check_output
from mait_deploy.device.profiling.side_by_side import time_bundles
from mait_deploy.device.profiling.stats import Latency
from mait_deploy.errors import MaitDeployError, UnsupportedOption
from mait_deploy.host import catalog
from mait_deploy.host.compare.models import CompareModel, ModelFacts, baseline_model, mait_model
from mait_deploy.host.compile.api import DEFAULT_DATA, load_data
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from mait_deploy.host.compile.target import Target
from mait_deploy.host.jobs.executors import check_executor_options, executor_for
from mait_deploy.host.jobs.job import BuildJob, BuildOutcome, build_inputs, land
from mait_deploy.precision import FP32, INT8, Precision, check_precisions
from mait_deploy.results import BundleRun, Status, batch_key
from mait_deploy.typed_json import decode, encode

OUT_MARKER = ".mait-compare"


@dataclass
class CompareOptions:
    targets: tuple[str, ...] | None = None  # None: every target this machine can build and run
    precisions: tuple[Precision, ...] = (FP32, INT8)
    batches: tuple[int, ...] = (1, 32)
    rounds: int = 8
    block: int = 4
    calibration: str | None = DEFAULT_DATA
    calibration_count: int = 64
    threads: int | None = None
    timm_python: str | None = None
    force: bool = False
    # Where the builds run (host/jobs): worker processes here (None: one per core that fits in free memory; 1:
    # one after the other in this process) or a Ray cluster's address. Timing always runs here, after every build.
    jobs: int | None = None
    cluster: str | None = None

    def __post_init__(self) -> None:
        known = backends.names()
        unknown = [t for t in self.targets or () if t not in known]
        if unknown:
            raise UnsupportedOption(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}")
        check_precisions(self.precisions)
        if not self.batches or any(b < 1 or b > 1024 for b in self.batches):
            raise UnsupportedOption(f"batch sizes must be 1 to 1024, got {list(self.batches)}")
        if self.rounds < 2 or self.block < 2:
            raise UnsupportedOption("need at least 2 rounds and blocks of at least 2 calls (the first is dropped)")
        if self.calibration_count < 1:
            raise UnsupportedOption("the calibration count must be positive")
        check_executor_options(self.jobs, self.cluster)


@dataclass
class ThroughputRatio:
    """How many times faster ``mait`` ran than ``baseline`` in one cell: the median of the per-round ratios, their
    min and max, and the distribution-free interval of that median (low, high) at ``confidence``."""

    mait: str
    baseline: str
    median: float
    min: float
    max: float
    low: float
    high: float
    confidence: float


@dataclass
class CompareCell:
    """One target x precision x batch: every model's bundle timed side by side in one process."""

    target: str
    precision: str
    batch: int
    rounds: int
    block: int
    rows: list[BundleRun]  # one per model timed (``model`` names it), in the models' order
    throughput_ratios: list[ThroughputRatio]


@dataclass
class CompareReport:
    models: list[ModelFacts]
    cells: list[CompareCell] = field(default_factory=list)  # one per target x precision x batch
    failures: list[BundleRun] = field(default_factory=list)  # model x target x precision that did not build
    machine: dict[str, object] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)
    plot: str | None = None  # compare.png, once written (None: nothing to draw)
    pareto_plot: str | None = None  # compare_pareto.png, once written

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: object, origin: str = "comparison report") -> "CompareReport":
        return decode(cls, data, origin)

    def role(self, model: str) -> str:
        return next(m.role for m in self.models if m.name == model)

    def failed(self, model: str, target: str, precision: str, why: str) -> None:
        self.failures.append(BundleRun(target=target, precision=precision, status=Status.FAILED, reason=why,
                                       model=model))


def compare(models: list[str], baselines: list[str], out_dir: str | os.PathLike[str],
            options: CompareOptions | None = None, progress: Callable[[str], None] | None = None) -> CompareReport:
    """Build, time and report; everything is written to ``out_dir`` (bundles/, compare.json/.md/.png)."""
    from mait_deploy.device.profiling.isa import cpu_isa
    from mait_deploy.host.compare.report import write_report

    if not models or not baselines:
        raise UnsupportedOption("compare needs at least one MaiT model and one baseline")
    names = [*models, *baselines]
    if len(set(names)) != len(names):
        raise UnsupportedOption("a model is listed twice")
    options = options or CompareOptions()
    if options.targets is None:
        available = backends.availability()
        options = dataclasses.replace(options, targets=tuple(
            name for name in backends.names() if not available[name] and catalog.target(name).host_can_run()[0]))
    step = progress or (lambda message: None)
    out = Path(out_dir)
    check_output(out, options.force, kind="dir", what="comparison",
                 ours=lambda p: None if (p / OUT_MARKER).is_file() else f"it has no {OUT_MARKER}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=_temp_prefix() + "compare-", dir=out.parent) as work_name, \
            atomic_dir(out) as staging:
        work = Path(work_name)
        # Baseline .onnx files are read, not exported: one that is not a usable model is an error before the
        # minutes of exports, not after them.
        read_first = {spec: baseline_model(spec, work, step, options.timm_python) for spec in baselines
                      if spec.lower().endswith(".onnx")}
        entries = [mait_model(spec, work, step) for spec in models]
        entries += [read_first.get(spec) or baseline_model(spec, work, step, options.timm_python)
                    for spec in baselines]
        named = [entry.name for entry in entries]
        if len(set(named)) != len(named):
            raise UnsupportedOption(f"two models have the same name ({', '.join(named)}): rename a checkpoint folder")
        report = CompareReport(models=[m.facts() for m in entries], machine=cpu_isa(),
                               options={k: v for k, v in dataclasses.asdict(options).items() if k != "force"})
        built = _build_all(entries, options, staging / "bundles", report, step)
        for target in options.targets or ():  # timed here, after every build is done
            for precision in options.precisions:
                bundles = built.get((target, precision), {})
                for batch in options.batches:
                    ready = {e.name: bundles[e.name][batch] for e in entries  # in the models' order
                             if batch in bundles.get(e.name, {})}
                    if ready:
                        step(f"timing {target} {precision} batch {batch}: {len(ready)} models side by side")
                        report.cells.append(_time_cell(entries, ready, target, precision, batch, options))
        (staging / OUT_MARKER).write_text("written by mait-deploy compare\n")
        write_report(report, staging)
    return report


def _build_all(entries: list[CompareModel], options: CompareOptions, root: Path, report: CompareReport,
               step: Callable[[str], None]) -> dict[tuple[str, str], dict[str, dict[int, Path]]]:
    """Every model's bundle(s) for every target and precision, built as jobs on the executor the options ask for:
    (target, precision) -> model -> batch -> bundle (a dynamic-batch bundle serves every batch size)."""

    jobs: list[BuildJob] = []
    serves: dict[str, tuple[str, str, str, list[int]]] = {}  # job -> target, precision, model, batch sizes
    calibrated: set[str] = set()
    for target in options.targets or ():
        plugin = catalog.target(target)
        for precision in options.precisions:
            for entry in entries:
                why = _cannot_build(plugin, entry, precision)
                if why:
                    report.failed(entry.name, target, precision, why)
                    continue
                for batch in ([None] if plugin.capabilities.dynamic_batch else list(options.batches)):
                    # entry.name is a plain file name (models.py): the folder stays inside the output
                    name = f"{entry.name}-{target}-{precision}" + ("" if batch is None else f"-b{batch}")
                    compile_options = CompileOptions(precision=precision,
                                                     batch=batch or plugin.capabilities.default_batch,
                                                     calibration=CalibrationOptions(count=options.calibration_count))
                    if plugin.needs_calibration(compile_options):
                        calibrated.add(entry.name)
                    jobs.append(BuildJob(name, target, precision, compile_options, source=entry.name))
                    sizes = list(options.batches) if batch is None else [batch]
                    serves[name] = (target, precision, entry.name, sizes)
    inputs = {}
    for entry in entries:  # each model's calibration images loaded once, for every target
        calibration = None
        if entry.name in calibrated:
            try:
                calibration, _ = load_data(entry.source, options.calibration,
                                           CalibrationOptions(count=options.calibration_count), None, None, step)
            except MaitDeployError as err:  # that model's calibrated builds fail with the reason, the rest go on
                for job in [j for j in jobs if j.source == entry.name and catalog.target(j.target)
                            .needs_calibration(j.options)]:
                    jobs.remove(job)
                    report.failed(entry.name, job.target, job.precision, str(err))
        inputs[entry.name] = build_inputs(entry.source, calibration, None)
    built: dict[tuple[str, str], dict[str, dict[int, Path]]] = {}
    if not jobs:
        return built
    executor = executor_for(options.jobs, options.cluster, len(jobs))
    step(f"building {len(jobs)} bundle(s) on {executor.name}")

    def done(outcome: BuildOutcome) -> None:
        target, precision, model, sizes = serves[outcome.name]
        step(f"{outcome.name}: {outcome.status} ({outcome.seconds:.0f} s)")
        try:
            if outcome.status != "ok":
                raise MaitDeployError(outcome.reason)
            land(outcome, root / outcome.name)
        except MaitDeployError as err:
            report.failed(model, target, precision, str(err))
            return
        for size in sizes:
            built.setdefault((target, precision), {}).setdefault(model, {})[size] = root / outcome.name

    executor.run(jobs, inputs, done, progress=step)
    return built


def _cannot_build(plugin: Target, entry: CompareModel, precision: str) -> str | None:
    """Why a model cannot be built (Target.cannot_build_here) or timed (the runtime) here for this cell."""
    why = plugin.cannot_build_here(CompileOptions(precision=precision),
                                   None if entry.source.torch_model is not None
                                   else entry.no_torch_module or "the model has no PyTorch module")
    if why:
        return why
    can_run, why = plugin.host_can_run()
    if not can_run:
        return f"this machine cannot run {plugin.name} ({why}); compare times on the machine that runs it"
    return None


def _time_cell(entries: list[CompareModel], bundles: dict[str, Path], target: str, precision: str, batch: int,
               options: CompareOptions) -> CompareCell:

    by_name = {e.name: e for e in entries}
    started = time.perf_counter()
    result = time_bundles(bundles, batch=batch, rounds=options.rounds, block=options.block, warmup=2,
                          threads=options.threads)
    seconds = round(time.perf_counter() - started, 1)
    calls = list(bundles)
    # A bundle by its place in the comparison's folder (it is built into a staging folder renamed at the end).
    rows = [BundleRun(target=target, precision=precision, status=Status.OK, model=name,
                      bundle=f"bundles/{Path(bundles[name]).name}",
                      latency={batch_key(batch): Latency.from_median(batch, result.median_ms[name])},
                      seconds=seconds) for name in calls]
    ratios = [ThroughputRatio(mait=m, baseline=b, **{k: round(float(v), 4)
                                                    for k, v in result.ratio_between(m, b).items()})
              for m in calls if by_name[m].role == "mait" for b in calls if by_name[b].role == "baseline"]
    return CompareCell(target=target, precision=precision, batch=batch, rounds=result.rounds, block=result.block,
                       rows=rows, throughput_ratios=ratios)
