"""compile_model(): one checkpoint or ONNX file -> one verified bundle for one target and precision."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from ._io import _temp_prefix
from .calibration.data import Dataset, check_disjoint, load_dataset, require_labels
from .exporters.base import CompileOptions, CompileResult, get_target
from .exporters.source import ModelSource, prepare_source

DEFAULT_DATA = "fashion-mnist"


def load_calibration(source: ModelSource, data: str | os.PathLike[str], options: CompileOptions) -> Dataset:
    return load_dataset(data, "calibration", source.config.preprocess, source.config.label_names(),
                        count=options.calibration.count, seed=options.calibration.seed,
                        num_classes=source.config.num_classes)


def load_evaluation(source: ModelSource, data: str | os.PathLike[str], count: int | None = None,
                    seed: int = 0) -> Dataset:
    dataset = load_dataset(data, "evaluation", source.config.preprocess, source.config.label_names(), count=count,
                           seed=seed, strict=count is not None, num_classes=source.config.num_classes)
    require_labels(dataset)
    return dataset


def compile_model(model: Any, target: str, options: CompileOptions, out_dir: str | os.PathLike[str],
                  calibration: str | os.PathLike[str] | None = DEFAULT_DATA,
                  evaluation: str | os.PathLike[str] | None = DEFAULT_DATA, eval_count: int | None = None,
                  progress: Callable[[str], None] | None = None) -> CompileResult:
    """Export (when ``model`` is a checkpoint), calibrate, build, gate and bundle.

    ``model``: a checkpoint folder/shipped name/None (the shipped default), a MaiT object, or an exported .onnx.
    ``calibration``/``evaluation``: data sources (see mait_deploy.calibration.data); the evaluation images must
    be held out from calibration. ``evaluation=None`` skips the accuracy gate (the bundle says so).
    """
    step = progress or (lambda message: None)
    plugin = get_target(target)
    plugin.check_options(options)  # fail on an impossible option before any slow work
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=_temp_prefix() + "work-", dir=out_dir.parent) as work:
        step("preparing the model source")
        source = prepare_source(model, Path(work), step)
        calib = None
        if plugin.needs_calibration(options):
            step(f"loading calibration data from {calibration}")
            calib = load_calibration(source, calibration or DEFAULT_DATA, options)
        evals = None
        if evaluation is not None:
            step(f"loading evaluation data from {evaluation}")
            evals = load_evaluation(source, evaluation, eval_count)
            if calib is not None:
                check_disjoint(calib, evals)
        return plugin.compile(source, options, out_dir, calib, evals, step)
