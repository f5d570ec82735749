"""The accuracy gate: every compiled artifact against the FP32 reference on held-out labelled data."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mait_deploy.device.accuracy import batched_logits
from mait_deploy.device.data.sources import Dataset, require_labels
from mait_deploy.device.logits import GateResult, compare_logits
from mait_deploy.device.profiling.isa import cpu_isa
from mait_deploy.errors import ValidationError

DEFAULT_MAX_DROP = 1.0  # points of top-1
SAMPLE_Z = 2.576  # a sampled gate decides only where the drop's 99% interval lies wholly on one side of the limit
SAMPLE_SEED = 0


def drop_interval(reference_correct: np.ndarray, correct: np.ndarray, population: int) -> tuple[float, float]:
    """The 99% interval (points) of the drop over ``population`` images from a simple random sample of them: the
    paired per-image differences (-1, 0, 1), their standard error with the finite-population correction, and at
    least the rule-of-three width."""
    differences = reference_correct.astype(np.float64) - correct.astype(np.float64)
    count = len(differences)
    mean = differences.mean()
    spread = differences.std(ddof=1) if count > 1 else 1.0
    correction = np.sqrt(max(0.0, (population - count) / max(1, population - 1)))
    # A sample with few or no disagreements has a spread near 0, and the normal interval would claim certainty the
    # rest of the images do not give: never narrower than the 99% bound on a rate never seen in ``count`` draws
    # (-ln 0.01 / count, the rule of three at 99%).
    half = max(SAMPLE_Z * spread / np.sqrt(count), -np.log(0.01) / count) * correction
    return round(float(mean - half) * 100, 4), round(float(mean + half) * 100, 4)  # plain floats: JSON


def accuracy_gate(predict: Callable[[np.ndarray], np.ndarray], reference_logits: np.ndarray, data: Dataset,
                  max_drop: float = DEFAULT_MAX_DROP, batch: int = 256, raise_on_failure: bool = True,
                  progress: Callable[[int], None] | None = None,
                  measured_with: dict[str, Any] | None = None, sample: int | None = None,
                  announce: Callable[[str], None] | None = None) -> GateResult:
    """Score ``predict`` on ``data`` against the reference logits of the same images. ``measured_with`` (the
    runner's runtime_info) and this host's ISA are recorded in the result, passed or failed.

    With ``sample``, a fixed random sample of that many images is scored first; the gate decides on it only where
    the drop's 99% interval over all images lies wholly below (pass) or above (fail) the limit, and scores the
    rest otherwise (the sample's logits are kept: no image is run twice). The result says which."""
    import time

    require_labels(data)
    if max_drop < 0:
        raise ValueError(f"max accuracy drop must be >= 0, got {max_drop}")
    if sample is not None and sample < 1:
        raise ValueError(f"a gate sample must hold at least one image, got {sample}")
    started = time.perf_counter()
    labels = data.labels
    population = len(labels)
    sampled_from = interval = None
    if sample is not None and sample < population:
        order = np.random.default_rng(SAMPLE_SEED).permutation(population)
        first = np.sort(order[:sample])
        logits_first = batched_logits(predict, data.inputs[first], batch, progress)
        low, high = drop_interval(reference_logits[first].argmax(-1) == labels[first],
                                  logits_first.argmax(-1) == labels[first], population)
        if high <= max_drop or low > max_drop:  # decided: the whole interval is on one side of the limit
            logits, reference_logits, labels = logits_first, reference_logits[first], labels[first]
            sampled_from, interval = population, [low, high]
        else:
            rest = np.sort(order[sample:])
            if announce:
                announce(f"the sample's drop interval {low:+.2f} to {high:+.2f} reaches the limit {max_drop:g}: "
                         f"scoring the other {len(rest)} images")
            logits = np.empty((population, logits_first.shape[1]), dtype=logits_first.dtype)
            logits[first] = logits_first
            logits[rest] = batched_logits(predict, data.inputs[rest], batch, progress)
    else:
        logits = batched_logits(predict, data.inputs, batch, progress)
    reference_top1 = float((reference_logits.argmax(-1) == labels).mean())
    top1 = float((logits.argmax(-1) == labels).mean())
    comparison = compare_logits(logits, reference_logits)
    drop = round((reference_top1 - top1) * 100, 4)
    result = GateResult(
        reference_top1=reference_top1, top1=top1, drop_points=drop,
        top1_agreement=comparison.top1_agreement, max_abs_diff=comparison.max_abs_diff,
        mean_abs_diff=comparison.mean_abs_diff, count=len(labels), data=data.origin, max_drop=max_drop,
        passed=bool(comparison.non_finite == 0 and (drop <= max_drop if interval is None else interval[1] <= max_drop)),
        seconds=round(time.perf_counter() - started, 2), runtime=measured_with or {}, host_isa=cpu_isa(),
        sampled_from=sampled_from, drop_interval=interval,
    )
    if raise_on_failure and not result.passed:
        raise AccuracyGateFailed(result)
    return result


class AccuracyGateFailed(ValidationError):
    """The artifact lost more top-1 than allowed; ``result`` holds the numbers."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        super().__init__(f"accuracy gate failed: {result.summary()}")
