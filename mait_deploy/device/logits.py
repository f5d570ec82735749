"""One way to compare logits, with one tolerance type: export parity, the accuracy gate and ``verify`` use it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from mait_deploy.errors import BundleError


@dataclass(frozen=True)
class Tolerance:
    """How far logits may be from the expected ones: max |diff| and the share of equal top-1 classes."""

    max_abs_diff: float
    min_top1_agreement: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "tolerance") -> "Tolerance":
        try:
            values = {key: float(data[key]) for key in ("max_abs_diff", "min_top1_agreement")}
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{origin} needs numeric max_abs_diff and min_top1_agreement") from err
        return cls(**values)


@dataclass(frozen=True)
class Comparison:
    """Logits against expected logits of the same inputs."""

    count: int
    max_abs_diff: float  # inf when any output is not finite
    mean_abs_diff: float
    top1_agreement: float
    non_finite: int  # outputs that are NaN or Inf

    def within(self, tolerance: Tolerance) -> bool:
        return (self.non_finite == 0 and self.max_abs_diff <= tolerance.max_abs_diff
                and self.top1_agreement >= tolerance.min_top1_agreement)

    def describe(self, tolerance: Tolerance | None = None) -> str:
        text = f"max |diff| {self.max_abs_diff:.3g}"
        if tolerance is not None:
            text += f" (limit {tolerance.max_abs_diff:g})"
        text += f", mean {self.mean_abs_diff:.3g}, top-1 agreement {self.top1_agreement * 100:.2f}%"
        if tolerance is not None:
            text += f" (limit {tolerance.min_top1_agreement * 100:.1f}%)"
        if self.non_finite:
            text += f", {self.non_finite} non-finite outputs"
        return text


def compare_logits(actual: np.ndarray, expected: np.ndarray) -> Comparison:
    if actual.shape != expected.shape:
        raise ValueError(f"logits shapes differ: {actual.shape} vs {expected.shape}")
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(actual64)
    diff = np.abs(actual64 - expected64)
    non_finite = int((~finite).sum())
    return Comparison(
        count=int(len(actual)),
        max_abs_diff=float("inf") if non_finite else float(diff.max(initial=0.0)),
        mean_abs_diff=float(diff[finite].mean()) if finite.any() else float("inf"),
        top1_agreement=float((actual.argmax(-1) == expected.argmax(-1)).mean()) if len(actual) else 1.0,
        non_finite=non_finite,
    )


@dataclass
class GateResult:
    """The accuracy gate: the artifact's top-1 against the FP32 reference on held-out labelled images."""

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
    # the device only where the two agree (see device/profiling/isa.py).
    runtime: dict[str, Any] = field(default_factory=dict)
    host_isa: dict[str, Any] = field(default_factory=dict)
    # A sampled gate: it decided on ``count`` images drawn (deterministically) from ``sampled_from``, because the
    # 99% interval of the drop over all of them (``drop_interval``, points) lay wholly on one side of the limit.
    sampled_from: int | None = None
    drop_interval: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "accuracy") -> "GateResult":
        if not isinstance(data, Mapping):
            raise BundleError(f"{origin} must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"{origin} has unknown fields: {', '.join(unknown)}")
        try:
            result = cls(**data)
        except TypeError as err:
            raise BundleError(f"{origin} is malformed: {err}") from err
        for name in ("reference_top1", "top1", "drop_points", "count", "max_drop"):
            value = getattr(result, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BundleError(f"{origin}.{name} must be a number, got {type(value).__name__}")
        return result

    def summary(self) -> str:
        sampled = ""
        if self.sampled_from and self.drop_interval:
            low, high = self.drop_interval
            sampled = (f" (a fixed sample of {self.sampled_from}; 99% interval of the drop on all: {low:+.2f} to "
                       f"{high:+.2f})")
        return (f"top-1 {self.top1 * 100:.2f}% vs reference {self.reference_top1 * 100:.2f}% "
                f"(drop {self.drop_points:+.2f} points, limit {self.max_drop:g}), agreement "
                f"{self.top1_agreement * 100:.2f}%, max |logit diff| {self.max_abs_diff:.3g} on {self.count} images"
                + sampled)
