"""Which bundle to ship, and why: the one rule deploy, deploy on boards and `compile --precision auto` share.

The rule: among the candidates that were not ruled out before timing (a failed gate, an on-board accuracy loss),
the fastest, where a reduced precision is eligible only if it is shown faster than its own target's FP32 on the same
machine (the interval of the ratio lies above 1; at equal speed FP32 keeps the accuracy). When the interval of the
fastest one's ratio over others includes 1, the race cannot separate them: the choice among those is "too close to
call" and goes to the tie-break (the smaller bundle, then the smaller top-1 drop, then the name), so the same
bundles give the same pick from run to run. The speed evidence is either a side-by-side race (per-round ratios and
their interval, device/profiling/side_by_side.py) or, where none could be run, each candidate's own latency (a
board's profile rows, one figure: no interval): ``Speed`` hides which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from mait_deploy.precision import FP32
from mait_deploy.results import BundleRun


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
    size_bytes: int | None = None  # the artifact's size, for the tie-break

    @classmethod
    def of(cls, run: BundleRun, ruled_out: str | None = None, note: str = "") -> "Candidate":
        """A bundle that ran (deploy's row, a board's row) as a candidate: named as the speed evidence names it."""
        return cls(name=run.name, target=run.target, precision=run.precision, bundle=run.bundle, ruled_out=ruled_out,
                   drop_points=None if run.gate is None else run.gate.drop_points, note=note,
                   size_bytes=run.size_bytes)


class Speed(Protocol):
    """Speed evidence for candidates by name."""

    @property
    def how(self) -> str:
        """E.g. "timed side by side at batch 1 in one process (12 rounds)"."""

    def has(self, name: str) -> bool: ...

    def latency_of(self, name: str) -> float:
        """The candidate's median latency in ms."""

    def ratio_between(self, fast: str, slow: str) -> dict[str, float]:
        """How many times faster ``fast`` is than ``slow``: median, min and max, and low/high (the interval of the
        median; equal to it where there is one figure)."""


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
        return {"median": value, "min": value, "max": value, "low": value, "high": value}


def describe_ratio(ratio: Mapping[str, float], other: str) -> str:
    """'1.56x onnxruntime fp32 (95% interval 1.48-1.60x; rounds 1.40-1.62x)', or the bare figure when there is one."""
    text = f"{ratio['median']:.2f}x {other}"
    if ratio["min"] != ratio["max"]:
        confidence = ratio.get("confidence")
        text += (f" ({'' if confidence is None else f'{confidence * 100:.0f}% '}interval {ratio['low']:.2f}-"
                 f"{ratio['high']:.2f}x; rounds {ratio['min']:.2f}-{ratio['max']:.2f}x)")
    return text


def separated(ratio: Mapping[str, float]) -> bool:
    """Whether the evidence says the first candidate is faster: the whole interval of the ratio above 1."""
    return ratio["low"] > 1.0


def tie_break_key(candidate: Candidate) -> tuple[float, float, str]:
    """The stated tie-break among candidates the race cannot separate: the smaller bundle, the smaller top-1 drop,
    then the name (so the pick never depends on the order the rows were built in)."""
    size = float("inf") if candidate.size_bytes is None else float(candidate.size_bytes)
    drop = float("inf") if candidate.drop_points is None else candidate.drop_points
    return size, drop, candidate.name


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
    too_close_to_call: list[str] = field(default_factory=list)  # the fastest ones the race could not separate
    figures_ms: dict[str, float] = field(default_factory=dict)  # every timed candidate's median
    evidence: str = ""  # how the figures were measured

    @property
    def chosen(self) -> bool:
        return self.target is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def faster_than_fp32(speed: Speed, candidate: Candidate, fp32: Candidate) -> tuple[bool, str]:
    """Whether ``candidate`` is shown faster than its target's FP32 (``separated``), and the figures."""
    ratio = speed.ratio_between(candidate.name, fp32.name)
    return separated(ratio), describe_ratio(ratio, fp32.name)


def recommend(candidates: Sequence[Candidate], speed: Speed, where: str = "") -> Recommendation:
    """The fastest eligible candidate (see the module's rule), with the reason and what was ruled out."""
    excluded = {c.name: c.ruled_out for c in candidates if c.ruled_out}
    timed = [c for c in candidates if not c.ruled_out and speed.has(c.name)]
    fp32_of = {c.target: c for c in timed if c.precision == FP32}
    for candidate in timed:
        fp32 = fp32_of.get(candidate.target)
        if candidate.precision != FP32 and fp32 is not None:
            faster, said = faster_than_fp32(speed, candidate, fp32)
            if not faster:
                excluded[candidate.name] = f"not shown faster than {fp32.name} {where or 'here'}: {said}"
    eligible = [c for c in timed if c.name not in excluded]
    figures = {c.name: round(speed.latency_of(c.name), 4) for c in timed}
    if not eligible:
        return Recommendation(target=None, precision=None, bundle=None, reason="no bundle was eligible",
                              not_recommended=excluded, figures_ms=figures, evidence=speed.how)
    ranked = sorted(eligible, key=lambda c: speed.latency_of(c.name))
    fastest = ranked[0]
    # The race cannot separate the fastest from these: the tie-break chooses among them.
    tied = [c for c in ranked if c is fastest or not separated(speed.ratio_between(fastest.name, c.name))]
    best = min(tied, key=tie_break_key)
    where_text = f"{speed.how}{' ' + where if where else ''}"
    if len(tied) > 1:
        medians = ", ".join(f"{c.name} {speed.latency_of(c.name):.3f} ms" for c in tied)
        others = "; ".join(f"{fastest.name} is " + describe_ratio(speed.ratio_between(fastest.name, c.name), c.name)
                           for c in tied if c is not fastest)
        parts = [f"too close to call ({medians} median, {where_text}: {others}); chosen by the tie-break: the "
                 f"smaller bundle, then the smaller top-1 drop" + (f" ({best.note})" if best.note else "")]
    else:
        parts = [f"fastest {where_text} ({speed.latency_of(best.name):.3f} ms median"
                 + (f", {best.note}" if best.note else "") + ")"]
    fp32 = fp32_of.get(best.target)
    if best.precision != FP32 and fp32 is not None:
        parts.append(faster_than_fp32(speed, best, fp32)[1])
    runner_up = next((c for c in ranked if c is not best), None)
    margin = None
    if runner_up is not None:
        margin = speed.ratio_between(best.name, runner_up.name)
        if len(tied) == 1:
            parts.append(describe_ratio(margin, f"the next, {runner_up.name}"))
    if best.drop_points is not None:
        parts.append(f"top-1 drop {best.drop_points:+.2f} points vs FP32")
    return Recommendation(target=best.target, precision=best.precision, bundle=best.bundle, reason="; ".join(parts),
                          not_recommended=excluded, name=best.name, median_ms=round(speed.latency_of(best.name), 4),
                          runner_up=None if runner_up is None else runner_up.name,
                          margin_over_next=None if margin is None else {k: round(v, 4) for k, v in margin.items()},
                          too_close_to_call=[c.name for c in tied] if len(tied) > 1 else [],
                          figures_ms=figures, evidence=speed.how)
