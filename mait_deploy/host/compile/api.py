"""compile_model(): one checkpoint or ONNX file -> one verified bundle for one target and precision, and the data
preparation that ``compile`` and ``deploy`` share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from mait_deploy import backends
from mait_deploy._io import _temp_prefix
from mait_deploy.device.data.sources import (
    Dataset,
    check_disjoint,
    load_dataset,
    require_labels,
)
from mait_deploy.host.compile.source import ModelSource, prepare_source
from mait_deploy.host.compile.target import (
    CalibrationOptions,
    CompileOptions,
    CompileResult,
)

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

    ``model``: a checkpoint folder/shipped name/None (the shipped default), a MaiT object, or an exported .onnx.
    ``calibration``/``evaluation``: data sources (see mait_deploy.device.data.sources); the evaluation images must
    be held out from calibration. ``evaluation=None`` skips the accuracy gate (the bundle says so).
    """
    step = progress or (lambda message: None)
    plugin = backends.target(target)
    plugin.check_options(options)  # fail on an impossible option before any slow work
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=_temp_prefix() + "work-", dir=out_dir.parent) as work:
        step("preparing the model source")
        source = prepare_source(model, Path(work), step)
        needs = plugin.needs_calibration(options)
        calib, evals = load_data(source, (calibration or DEFAULT_DATA) if needs else None, options.calibration,
                                 evaluation, eval_count, step)
        return plugin.compile(source, options, out_dir, calib, evals, step)
