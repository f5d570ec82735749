"""compile_model(): one checkpoint or ONNX file -> one verified bundle for one target and precision, and the data
preparation that ``compile`` and ``deploy`` share."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from mait_deploy import backends
from mait_deploy._io import _temp_prefix, atomic_dir, check_output, read_json
from mait_deploy.device.archive import bundle_ownership
from mait_deploy.device.data.sources import (
    Dataset,
    check_disjoint,
    check_source,
    load_dataset,
    require_labels,
)
from mait_deploy.device.manifest import MANIFEST_FILE, Manifest
from mait_deploy.device.profiling.isa import cpu_isa
from mait_deploy.device.profiling.side_by_side import time_bundles
from mait_deploy.errors import UnsupportedOption, ValidationError
from mait_deploy.host import catalog
from mait_deploy.host.compile.gate import AccuracyGateFailed
from mait_deploy.host.compile.source import ModelSource, prepare_source
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions, CompileResult
from mait_deploy.precision import FP32
from mait_deploy.recommendation import Candidate, recommend

DEFAULT_DATA = "fashion-mnist"


def load_calibration(source: ModelSource, data: str | os.PathLike[str], options: CalibrationOptions) -> Dataset:
    return load_dataset(data, "calibration", source.config.preprocess, source.config.label_names(),
                        count=options.count, seed=options.seed, num_classes=source.config.num_classes)


def load_evaluation(source: ModelSource, data: str | os.PathLike[str], count: int | None = None,
                    seed: int = 0) -> Dataset:
    dataset = load_dataset(data, "evaluation", source.config.preprocess, source.config.label_names(), count=count,
                           seed=seed, strict=count is not None, num_classes=source.config.num_classes)
    require_labels(dataset)
    return dataset


def check_data(calibration: str | os.PathLike[str] | None, evaluation: str | os.PathLike[str] | None) -> None:
    """What ``load_data`` will read, checked to exist and be readable as data before the slow work (an export): a
    mistyped path is one error at once."""
    for data in (calibration, evaluation):
        if data is not None:
            check_source(data)


def load_data(source: ModelSource, calibration: str | os.PathLike[str] | None, calibration_options: CalibrationOptions,
              evaluation: str | os.PathLike[str] | None, eval_count: int | None,
              progress: Callable[[str], None] | None = None) -> tuple[Dataset | None, Dataset | None]:
    """Calibration images (when ``calibration`` is given) and held-out labelled evaluation images (when
    ``evaluation`` is given), checked to be disjoint."""
    step = progress or (lambda message: None)
    calib = evals = None
    if calibration is not None:
        step(f"loading calibration data from {calibration}")
        calib = load_calibration(source, calibration, calibration_options)
    if evaluation is not None:
        step(f"loading evaluation data from {evaluation}")
        evals = load_evaluation(source, evaluation, eval_count)
    if calib is not None and evals is not None:
        check_disjoint(calib, evals)
    return calib, evals


def compile_model(model: Any, target: str, options: CompileOptions, out_dir: str | os.PathLike[str],
                  calibration: str | os.PathLike[str] | None = DEFAULT_DATA,
                  evaluation: str | os.PathLike[str] | None = DEFAULT_DATA, eval_count: int | None = None,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    """Export (when ``model`` is a checkpoint), calibrate, build, gate and bundle.

    ``model``: a checkpoint folder/shipped name/None (the shipped default), a MaiT object, an exported .onnx, or a
    ModelSource already prepared (``source_from_checkpoint``: one export compiled for several targets).
    ``calibration``/``evaluation``: data sources (see mait_deploy.device.data.sources); the evaluation images must
    be held out from calibration. ``evaluation=None`` skips the accuracy gate (the bundle says so).
    """
    step = progress or (lambda message: None)
    plugin = catalog.target(target)
    backends.require_host(target)
    auto = options.precision == "auto"
    # --precision auto: every precision this target builds and this machine computes (BF16 needs the hardware).
    candidates = [candidate for candidate in (dataclasses.replace(options, precision=p)
                                              for p in plugin.capabilities.precisions)
                  if not plugin.cannot_build_here(candidate)] if auto else [options]
    for candidate in candidates:
        plugin.check_options(candidate)  # fail on an impossible option before any slow work
    if auto:
        can_run, why = plugin.host_can_run()
        if not can_run:
            raise UnsupportedOption(f"--precision auto times every precision on this machine, which cannot run "
                                    f"{target} ({why}); choose the precision, then profile on the device")
        if evaluation is None:
            raise UnsupportedOption("--precision auto needs the accuracy gate (--eval): it chooses among the "
                                    "precisions that pass it")
        device_isa = options.target_options.get("device_isa")
        environment = plugin.timing_environment(device_isa)
        if environment is None:
            raise UnsupportedOption(f"--precision auto with -O device_isa={device_isa}: {target} cannot be made to "
                                    f"run as that CPU on this one ({cpu_isa()['int8_class']}); choose the "
                                    f"precision here, or run --precision auto on the device")
    needs = any(plugin.needs_calibration(candidate) for candidate in candidates)
    calibration = (calibration or DEFAULT_DATA) if needs else None
    check_data(calibration, evaluation)
    out_dir = Path(out_dir)
    # An output that is there (without --force) or not ours is refused before the export, not after it (this also
    # creates its parent folder); the build checks again when it writes: another command may create it meanwhile.
    check_output(out_dir, options.force, kind="dir", ours=bundle_ownership, what="bundle")
    with tempfile.TemporaryDirectory(prefix=_temp_prefix() + "work-", dir=out_dir.parent) as work:
        step("preparing the model source")
        source = prepare_source(model, Path(work), step)
        calib, evals = load_data(source, calibration, options.calibration,
                                 evaluation, eval_count, step)
        if auto:
            return _compile_fastest(plugin, source, candidates, out_dir, Path(work), calib, evals, step,
                                    environment)
        return plugin.compile(source, options, out_dir, calib, evals, step)


def _compile_fastest(plugin: Any, source: ModelSource, candidates: list[CompileOptions], out_dir: Path, work: Path,
                     calibration: Dataset | None, evaluation: Dataset, step: Callable[[str], None],
                     environment: dict[str, str]) -> CompileResult:
    """--precision auto: build every precision, time those that pass the gate side by side on this machine (under
    ``environment``: the runtime's ISA cap for another device, see Target.timing_environment), and keep the
    fastest; a reduced precision only where it beats FP32 there (mait_deploy/recommendation.py)."""

    built: dict[str, CompileResult] = {}
    rejected: dict[str, str] = {}
    for options in candidates:
        try:
            built[options.precision] = plugin.compile(source, dataclasses.replace(options, force=False),
                                                      work / options.precision, calibration, evaluation, step)
        except AccuracyGateFailed as err:
            rejected[options.precision] = f"failed the accuracy gate: {err.result.summary()}"
    if FP32 not in built:
        raise ValidationError(f"--precision auto: FP32 itself did not pass ({rejected.get(FP32)})")
    device_isa = candidates[0].target_options.get("device_isa")
    where = "on this machine" + (f" with {plugin.name}'s kernels capped to {device_isa} ("
                                 f"{' '.join(f'{k}={v}' for k, v in environment.items())})" if environment else "")
    step(f"timing {', '.join(built)} side by side {where}")
    timing = time_bundles({p: result.bundle for p, result in built.items()}, baseline=FP32, environment=environment)
    choice = recommend([Candidate(name=o.precision, target=plugin.name, precision=o.precision,
                                  ruled_out=rejected.get(o.precision),
                                  size_bytes=built[o.precision].size_bytes if o.precision in built else None,
                                  drop_points=built[o.precision].gate.drop_points
                                  if o.precision in built and built[o.precision].gate else None)
                        for o in candidates], timing, where=where)
    chosen = choice.precision
    folder = work / chosen
    manifest = Manifest.from_dict(read_json(folder / MANIFEST_FILE), str(folder))
    manifest.build["precision_choice"] = {"chosen": chosen, "why": choice.reason,
                                          "not_chosen": choice.not_recommended, "side_by_side": timing.to_dict(),
                                          "runner_up": choice.runner_up, "margin_over_next": choice.margin_over_next}
    manifest.write(folder)
    options = candidates[0]
    check_output(out_dir, options.force, kind="dir", ours=bundle_ownership, what="bundle")
    with atomic_dir(out_dir, replace=options.force) as staging:
        for entry in folder.iterdir():
            os.replace(entry, staging / entry.name)
    result = built[chosen]
    result.bundle, result.manifest = str(out_dir), manifest
    return result
