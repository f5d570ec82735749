"""Top-1 accuracy on labelled data of a checkpoint (PyTorch, the reference), an exported ONNX (ONNX Runtime, its
config from the ONNX metadata) or a bundle (its device runtime)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mait_deploy.device.accuracy import (
    AccuracyResult,
    evaluate_bundle,
    is_bundle,
    score,
)
from mait_deploy.device.data.sources import load_dataset
from mait_deploy.host.compile.source import source_from_onnx
from mait_deploy.host.export.parity import ort_predictor
from mait_deploy.host.model.zoo import resolve_checkpoint


def _dataset(config: Any, data: str, count: int | None, seed: int) -> Any:
    return load_dataset(data, "evaluation", config.preprocess, config.label_names(), count=count, seed=seed,
                        strict=count is not None, num_classes=config.num_classes)


def evaluate_checkpoint(checkpoint: str | os.PathLike[str] | None = None, data: str = "fashion-mnist",
                        count: int | None = None, seed: int = 0) -> AccuracyResult:
    """Top-1 of a checkpoint (PyTorch, FP32) on labelled data."""
    import torch

    from mait_deploy.host.model.checkpoint import load_checkpoint

    path = resolve_checkpoint(checkpoint)
    model = load_checkpoint(path)
    dataset = _dataset(model.config, data, count, seed)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return score(predict, dataset, f"{path} (PyTorch FP32)")


def evaluate_onnx(path: str | os.PathLike[str], data: str = "fashion-mnist", count: int | None = None,
                  seed: int = 0) -> AccuracyResult:
    """Top-1 of an exported ONNX (its config, preprocessing and labels from its metadata), in ONNX Runtime."""

    source = source_from_onnx(path)
    dataset = _dataset(source.config, data, count, seed)
    return score(ort_predictor(str(path)), dataset, f"{path} (ONNX Runtime)")


def evaluate(model_or_bundle: str | os.PathLike[str] | None = None, data: str = "fashion-mnist",
             count: int | None = None, seed: int = 0) -> AccuracyResult:
    """A bundle folder is evaluated with its runtime, an .onnx file in ONNX Runtime, anything else is taken as a
    checkpoint."""
    if is_bundle(model_or_bundle):
        return evaluate_bundle(model_or_bundle, data, count, seed)
    if model_or_bundle is not None and str(model_or_bundle).lower().endswith(".onnx"):
        return evaluate_onnx(model_or_bundle, data, count, seed)
    return evaluate_checkpoint(model_or_bundle, data, count, seed)
