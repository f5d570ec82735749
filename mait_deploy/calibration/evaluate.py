"""Top-1 accuracy of a PyTorch MaiT on labelled data (the reference the accuracy gate compares against)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..runtimes.preprocess import preprocess_uint8_batch
from .builtin import RawImages


@dataclass(frozen=True)
class AccuracyResult:
    top1: float
    correct: int
    count: int
    data: str
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


def torch_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    model.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return predict


def evaluate_model(model: Any, data: RawImages, batch: int = 256,
                   progress: Callable[[int], None] | None = None) -> AccuracyResult:
    """Top-1 of a PyTorch MaiT on labelled uint8 images, preprocessed by the device-side code."""
    if data.labels is None:
        raise ValueError("evaluation needs labelled data")
    started = time.perf_counter()
    inputs = preprocess_uint8_batch(data.images, model.config.preprocess)
    logits = batched_logits(torch_predictor(model), inputs, batch, progress)
    correct = int((logits.argmax(-1) == data.labels).sum())
    return AccuracyResult(top1=correct / len(data), correct=correct, count=len(data), data=data.origin,
                          seconds=round(time.perf_counter() - started, 2))
