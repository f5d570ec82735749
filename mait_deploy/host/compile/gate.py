"""The accuracy gate: every compiled artifact against the FP32 reference on held-out labelled data."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mait_deploy.device.compare import GateResult, compare_logits
from mait_deploy.device.data.sources import Dataset, require_labels
from mait_deploy.device.evaluate import batched_logits
from mait_deploy.device.profiling.isa import cpu_isa
from mait_deploy.errors import ValidationError

DEFAULT_MAX_DROP = 1.0  # points of top-1


def accuracy_gate(predict: Callable[[np.ndarray], np.ndarray], reference_logits: np.ndarray, data: Dataset,
                  max_drop: float = DEFAULT_MAX_DROP, batch: int = 256, raise_on_failure: bool = True,
                  progress: Callable[[int], None] | None = None,
                  measured_with: dict[str, Any] | None = None) -> GateResult:
    """Score ``predict`` on ``data`` against the reference logits of the same images. ``measured_with`` (the
    runner's runtime_info) and this host's ISA are recorded in the result, passed or failed."""
    import time

    require_labels(data)
    if max_drop < 0:
        raise ValueError(f"max accuracy drop must be >= 0, got {max_drop}")
    started = time.perf_counter()
    logits = batched_logits(predict, data.inputs, batch, progress)
    labels = data.labels
    reference_top1 = float((reference_logits.argmax(-1) == labels).mean())
    top1 = float((logits.argmax(-1) == labels).mean())
    comparison = compare_logits(logits, reference_logits)
    drop = round((reference_top1 - top1) * 100, 4)
    result = GateResult(
        reference_top1=reference_top1, top1=top1, drop_points=drop,
        top1_agreement=comparison.top1_agreement, max_abs_diff=comparison.max_abs_diff,
        mean_abs_diff=comparison.mean_abs_diff, count=len(labels), data=data.origin, max_drop=max_drop,
        passed=comparison.non_finite == 0 and drop <= max_drop, seconds=round(time.perf_counter() - started, 2),
        runtime=measured_with or {}, host_isa=cpu_isa(),
    )
    if raise_on_failure and not result.passed:
        raise AccuracyGateFailed(result)
    return result


class AccuracyGateFailed(ValidationError):
    """The artifact lost more top-1 than allowed; ``result`` holds the numbers."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        super().__init__(f"accuracy gate failed: {result.summary()}")
