"""Which bundle to ship, and why: the one rule deploy, deploy on boards and `compile --precision auto` share.

The rule: among the candidates that were not ruled out before timing (a failed gate, an on-board accuracy loss),
the fastest, where a reduced precision is eligible only if it beats its own target's FP32 on the same machine.
The speed evidence is either a side-by-side race (per-round ratios, device/profiling/side_by_side.py) or, where
none could be run, each candidate's own latency (a board's profile rows): ``Speed`` hides which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from mait_deploy.precision import FP32


@dataclass(frozen=True)
class Candidate:
    """One bundle that could be recommended."""

    name: str  # how the speed evidence and the report name it
    target: str
    precision: str
    bundle: str | None = None
    ruled_out: str | None = None  # why it cannot be chosen, decided before speed (gate, on-board accuracy)
    drop_points: float | None = None  # top-1 drop vs FP32, for the reason
    note: str = ""  # more about it for the reason (e.g. its on-board top-1)


class Speed(Protocol):
    """Speed evidence for candidates by name."""

    how: str  # e.g. "timed side by side at batch 1 in one process (12 rounds)"

    def has(self, name: str) -> bool: ...

    def latency_of(self, name: str) -> float:
        """The candidate's median latency in ms."""

    def ratio_between(self, fast: str, slow: str) -> dict[str, float]:
        """How many times faster ``fast`` is than ``slow``: median, min and max."""


@dataclass(frozen=True)
class OwnLatency:
    """Each candidate's own latency, measured apart (a board's profile rows): one figure, no spread."""

    latency_ms: Mapping[str, float]
    how: str = "p50 at batch 1"

    def has(self, name: str) -> bool:
        return name in self.latency_ms

    def latency_of(self, name: str) -> float:
        return self.latency_ms[name]

    def ratio_between(self, fast: str, slow: str) -> dict[str, float]:
        value = self.latency_ms[slow] / self.latency_ms[fast]
        return {"median": value, "min": value, "max": value}


def describe_ratio(ratio: Mapping[str, float], other: str) -> str:
    """'1.56x onnxruntime fp32 (rounds 1.40-1.62x)', or without the rounds when there is one figure."""
    text = f"{ratio['median']:.2f}x {other}"
    if ratio["min"] != ratio["max"]:
        text += f" (rounds {ratio['min']:.2f}-{ratio['max']:.2f}x)"
    return text


@dataclass
class Recommendation:
    """What to ship and why, with the figures it was chosen from. ``target`` is None when nothing was eligible."""

    target: str | None
    precision: str | None
    bundle: str | None
    reason: str
    not_recommended: dict[str, str] = field(default_factory=dict)  # name -> why not
    name: str | None = None
    median_ms: float | None = None
    runner_up: str | None = None
    margin_over_next: dict[str, float] | None = None  # how many times faster than the runner-up
    figures_ms: dict[str, float] = field(default_factory=dict)  # every timed candidate's median
    evidence: str = ""  # how the figures were measured

    @property
    def chosen(self) -> bool:
        return self.target is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def faster_than_fp32(speed: Speed, candidate: Candidate, fp32: Candidate) -> tuple[bool, str]:
    """Whether ``candidate`` beat its target's FP32 (median of the ratios above 1), and the figures."""
    ratio = speed.ratio_between(candidate.name, fp32.name)
    return ratio["median"] > 1.0, describe_ratio(ratio, fp32.name)


def recommend(candidates: Sequence[Candidate], speed: Speed, where: str = "") -> Recommendation:
    """The fastest eligible candidate (see the module's rule), with the reason and what was ruled out."""
    excluded = {c.name: c.ruled_out for c in candidates if c.ruled_out}
    timed = [c for c in candidates if not c.ruled_out and speed.has(c.name)]
    fp32_of = {c.target: c for c in timed if c.precision == FP32}
    for candidate in timed:
        fp32 = fp32_of.get(candidate.target)
        if candidate.precision != FP32 and fp32 is not None:
            faster, figures = faster_than_fp32(speed, candidate, fp32)
            if not faster:
                excluded[candidate.name] = f"not faster than {fp32.name} {where or 'here'}: {figures}"
    eligible = [c for c in timed if c.name not in excluded]
    figures = {c.name: round(speed.latency_of(c.name), 4) for c in timed}
    if not eligible:
        return Recommendation(target=None, precision=None, bundle=None, reason="no bundle was eligible",
                              not_recommended=excluded, figures_ms=figures, evidence=speed.how)
    ranked = sorted(eligible, key=lambda c: speed.latency_of(c.name))
    best = ranked[0]
    parts = [f"fastest {speed.how}{' ' + where if where else ''} ({speed.latency_of(best.name):.3f} ms median"
             + (f", {best.note}" if best.note else "") + ")"]
    fp32 = fp32_of.get(best.target)
    if best.precision != FP32 and fp32 is not None:
        parts.append(faster_than_fp32(speed, best, fp32)[1])
    runner_up = ranked[1] if len(ranked) > 1 else None
    margin = None
    if runner_up is not None:
        margin = speed.ratio_between(best.name, runner_up.name)
        parts.append(f"{margin['median']:.2f}x the next, {runner_up.name}")
    if best.drop_points is not None:
        parts.append(f"top-1 drop {best.drop_points:+.2f} points vs FP32")
    return Recommendation(target=best.target, precision=best.precision, bundle=best.bundle, reason="; ".join(parts),
                          not_recommended=excluded, name=best.name, median_ms=round(speed.latency_of(best.name), 4),
                          runner_up=None if runner_up is None else runner_up.name,
                          margin_over_next=None if margin is None else {k: round(v, 4) for k, v in margin.items()},
                          figures_ms=figures, evidence=speed.how)
