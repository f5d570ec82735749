"""Top-1 accuracy on labelled data: of a checkpoint (PyTorch, the reference) or of a bundle (device runtime)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .data import Dataset, load_dataset, require_labels


@dataclass(frozen=True)
class AccuracyResult:
    top1: float
    correct: int
    count: int
    data: str
    model: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def batched_logits(predict: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int = 256,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Run ``predict`` over ``inputs`` in batches and concatenate the logits."""
    outputs = []
    for start in range(0, len(inputs), batch):
        outputs.append(np.asarray(predict(inputs[start:start + batch]), dtype=np.float32))
        if progress:
            progress(min(batch, len(inputs) - start))
    return np.concatenate(outputs)


def _score(predict: Callable[[np.ndarray], np.ndarray], dataset: Dataset, model: str) -> AccuracyResult:
    require_labels(dataset)
    started = time.perf_counter()
    logits = batched_logits(predict, dataset.inputs)
    correct = int((logits.argmax(-1) == dataset.labels).sum())
    return AccuracyResult(top1=correct / len(dataset), correct=correct, count=len(dataset), data=dataset.origin,
                          model=model, seconds=round(time.perf_counter() - started, 2))


def is_bundle(path: str | os.PathLike[str] | None) -> bool:
    from ..bundle.manifest import MANIFEST_FILE

    return path is not None and (Path(path) / MANIFEST_FILE).is_file()


def evaluate_bundle(bundle: str | os.PathLike[str], data: str = "fashion-mnist", count: int | None = None,
                    seed: int = 0, threads: int | None = None) -> AccuracyResult:
    """Top-1 of a bundle on labelled data, through the device runtime (no torch)."""
    from ..bundle.load import load_bundle
    from ..model.config import PreprocessConfig
    from ..runtimes.base import RunnerOptions

    runner = load_bundle(bundle, RunnerOptions(threads=threads))
    manifest = runner.manifest
    dataset = load_dataset(data, "evaluation", PreprocessConfig.from_dict(manifest.preprocess), manifest.labels,
                           count=count, seed=seed, strict=count is not None,
                           num_classes=manifest.model["num_classes"])
    with runner:
        return _score(runner.run, dataset, f"{bundle} ({manifest.target} {manifest.precision})")


def evaluate_checkpoint(checkpoint: str | os.PathLike[str] | None = None, data: str = "fashion-mnist",
                        count: int | None = None, seed: int = 0) -> AccuracyResult:
    """Top-1 of a checkpoint (PyTorch, FP32) on labelled data."""
    import torch

    from ..model.checkpoint import load_checkpoint
    from ..model.zoo import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model = load_checkpoint(path)
    config = model.config
    dataset = load_dataset(data, "evaluation", config.preprocess, config.label_names(), count=count, seed=seed,
                           strict=count is not None, num_classes=config.num_classes)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return _score(predict, dataset, f"{path} (PyTorch FP32)")


def evaluate(model_or_bundle: str | os.PathLike[str] | None = None, data: str = "fashion-mnist",
             count: int | None = None, seed: int = 0) -> AccuracyResult:
    """A bundle folder is evaluated with its runtime; anything else is taken as a checkpoint."""
    if is_bundle(model_or_bundle):
        return evaluate_bundle(model_or_bundle, data, count, seed)
    return evaluate_checkpoint(model_or_bundle, data, count, seed)
