"""The accuracy gate: every compiled artifact against the FP32 reference on held-out labelled data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from mait_deploy.device.data.sources import Dataset, require_labels
from mait_deploy.device.evaluate import batched_logits
from mait_deploy.errors import ValidationError

DEFAULT_MAX_DROP = 1.0  # points of top-1


@dataclass
class GateResult:
    reference_top1: float
    top1: float
    drop_points: float  # reference_top1 - top1, in percentage points
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    count: int
    data: str
    max_drop: float
    passed: bool
    seconds: float = 0.0
    # What computed the scored logits (runtime, version, int8 simulated or not) and on which CPU: a gate measures
    # the device only where the two agree (see profiling/isa.py).
    runtime: dict[str, Any] = field(default_factory=dict)
    host_isa: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"top-1 {self.top1 * 100:.2f}% vs reference {self.reference_top1 * 100:.2f}% "
                f"(drop {self.drop_points:+.2f} points, limit {self.max_drop:g}), agreement "
                f"{self.top1_agreement * 100:.2f}%, max |logit diff| {self.max_abs_diff:.3g} on {self.count} images")


def accuracy_gate(predict: Callable[[np.ndarray], np.ndarray], reference_logits: np.ndarray, data: Dataset,
                  max_drop: float = DEFAULT_MAX_DROP, batch: int = 256, raise_on_failure: bool = True,
                  progress: Callable[[int], None] | None = None) -> GateResult:
    """Score ``predict`` on ``data`` against the reference logits of the same images."""
    import time

    require_labels(data)
    if max_drop < 0:
        raise ValueError(f"max accuracy drop must be >= 0, got {max_drop}")
    started = time.perf_counter()
    logits = batched_logits(predict, data.inputs, batch, progress)
    labels = data.labels
    reference_top1 = float((reference_logits.argmax(-1) == labels).mean())
    top1 = float((logits.argmax(-1) == labels).mean())
    diff = np.abs(logits.astype(np.float64) - reference_logits)
    drop = round((reference_top1 - top1) * 100, 4)
    result = GateResult(
        reference_top1=reference_top1, top1=top1, drop_points=drop,
        top1_agreement=float((logits.argmax(-1) == reference_logits.argmax(-1)).mean()),
        max_abs_diff=float(np.nanmax(diff)) if np.isfinite(diff).any() else float("inf"),
        mean_abs_diff=float(np.nanmean(diff)), count=len(labels), data=data.origin, max_drop=max_drop,
        passed=bool(np.isfinite(logits).all()) and drop <= max_drop, seconds=round(time.perf_counter() - started, 2),
    )
    if raise_on_failure and not result.passed:
        raise AccuracyGateFailed(result)
    return result


class AccuracyGateFailed(ValidationError):
    """The artifact lost more top-1 than allowed; ``result`` holds the numbers."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        super().__init__(f"accuracy gate failed: {result.summary()}")
