"""Top-1 accuracy of a bundle on labelled data, through its device runtime (numpy + that runtime)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy.config import PreprocessConfig
from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.data.sources import Dataset, load_dataset, require_labels
from mait_deploy.device.manifest import MANIFEST_FILE
from mait_deploy.device.runner import RunnerOptions


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


def score(predict: Callable[[np.ndarray], np.ndarray], dataset: Dataset, model: str) -> AccuracyResult:
    require_labels(dataset)
    started = time.perf_counter()
    logits = batched_logits(predict, dataset.inputs)
    correct = int((logits.argmax(-1) == dataset.labels).sum())
    return AccuracyResult(top1=correct / len(dataset), correct=correct, count=len(dataset), data=dataset.origin,
                          model=model, seconds=round(time.perf_counter() - started, 2))


def is_bundle(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and (Path(path) / MANIFEST_FILE).is_file()


def evaluate_bundle(bundle: str | os.PathLike[str], data: str = "fashion-mnist", count: int | None = None,
                    seed: int = 0, threads: int | None = None) -> AccuracyResult:
    """Top-1 of a bundle on labelled data, through the device runtime (no torch)."""

    runner = load_bundle(bundle, RunnerOptions(threads=threads))
    manifest = runner.manifest
    dataset = load_dataset(data, "evaluation", PreprocessConfig.from_dict(manifest.preprocess), manifest.labels,
                           count=count, seed=seed, strict=count is not None,
                           num_classes=manifest.model["num_classes"])
    with runner:
        return score(runner.run, dataset, f"{bundle} ({manifest.target} {manifest.precision})")
