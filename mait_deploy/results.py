"""One typed result for every bundle that was built, run or timed: ``BundleRun``. deploy's rows, the fleet's rows
(one per board x bundle x runner) and compare's cells are BundleRuns; the recommendation, the Pareto front, the
tables and the plots take sequences of them, and a report read back from JSON (a board's, a worker's, a file)
goes through ``BundleRun.from_dict``, which refuses what does not fit (typed_json.decode).

The JSON Schemas of the reports that carry them are generated from these types (host/report_schemas.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mait_deploy.device.profiling.stats import Latency
from mait_deploy.typed_json import decode, encode


class Status(str, enum.Enum):
    OK = "ok"
    FAILED_GATE = "failed_gate"  # built, but its accuracy gate failed: never shipped
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (the runtime is missing there, the model cannot be converted, ...)

    def __str__(self) -> str:
        return self.value


class RunnerKind(str, enum.Enum):
    PYTHON = "python"  # the device side's Python runner (numpy and one runtime)
    NATIVE = "native"  # the C++ runner an embedded app links

    def __str__(self) -> str:
        return self.value


@dataclass
class GateFigures:
    """The accuracy gate's figures: the bundle's top-1 and the FP32 reference's on the same held-out images."""

    top1: float | None = None
    reference_top1: float | None = None
    drop_points: float | None = None  # reference - bundle, percentage points
    images: int | None = None  # the images all three were measured on
    sampled_from: int | None = None  # the gate decided on a fixed sample of this many held-out images
    drop_interval: tuple[float, float] | None = None  # then: the drop's 99% interval over all of them (points)
    undecided_sample: int | None = None  # a sample of this size could not decide, so every image was scored

    @classmethod
    def of(cls, gate: Any, tried_sample: int | None = None) -> "GateFigures":
        """From a GateResult (device/logits.py); ``tried_sample``: the sample the gate was asked to decide on."""
        figures = cls(top1=gate.top1, reference_top1=gate.reference_top1, drop_points=gate.drop_points,
                      images=gate.count)
        if gate.sampled_from:
            figures.sampled_from = gate.sampled_from
            figures.drop_interval = (float(gate.drop_interval[0]), float(gate.drop_interval[1]))
        elif tried_sample and tried_sample < gate.count:
            figures.undecided_sample = tried_sample
        return figures

    def measured_on(self) -> str:
        """Which images the top-1 and drop are on: '2000 of 10000 (sample)' or '10000 (all)'."""
        if self.images is None:
            return "-"
        if self.sampled_from:
            return f"{self.images} of {self.sampled_from} (sample)"
        return f"{self.images} (all)"

    def notes(self) -> list[str]:
        """How the gate decided, where it decided on a sample (or could not)."""
        if self.sampled_from and self.drop_interval:
            low, high = self.drop_interval
            return [f"drop's 99% interval over all {self.sampled_from} images {low:+.2f} to {high:+.2f}"]
        if self.undecided_sample:
            return [f"a {self.undecided_sample}-image sample could not decide the gate (its interval reached the "
                    f"limit): scored on all {self.images}"]
        return []


@dataclass
class Memory:
    peak_rss_mb: float | None = None  # of the process that ran it (deploy: every bundle profiled before it too)
    rss_added_mb: float | None = None  # what loading and running this bundle added to that process


@dataclass
class Verified:
    """The golden check where the bundle ran: the recorded outputs reproduced within the bundle's tolerance."""

    passed: bool
    runtime: str = ""  # what ran it, e.g. "onnxruntime 1.32.0"
    images: int | None = None
    golden_kind: str | None = None  # images (through preprocessing) or inputs (preprocessed)
    max_abs_diff: float | None = None
    top1_agreement: float | None = None
    isa_note: str | None = None  # this CPU's int8 class differs from the one the gate ran on
    message: str = ""  # the runner's own words (the native self-test's last line)
    # What the device runner's check says besides (the Python runner's VerifyReport; none from the native one).
    tolerance: dict[str, float] = field(default_factory=dict)
    tolerance_basis: str | None = None
    golden_recorded_on: dict[str, object] | None = None  # the CPU and runtime the golden outputs came from
    device_isa: dict[str, object] = field(default_factory=dict)  # this device's CPU

    @classmethod
    def of(cls, report: Any) -> "Verified":
        """From a device VerifyReport (device/bundle.py), or its dict as a board sends it."""
        data = report if isinstance(report, Mapping) else report.to_dict()
        runtime = data.get("runtime") or {}
        described = " ".join(str(runtime[key]) for key in ("runtime", "version") if runtime.get(key)) \
            if isinstance(runtime, Mapping) else str(runtime)
        count = data.get("count")
        return cls(passed=bool(data.get("passed")), runtime=described, images=count,
                   golden_kind=data.get("golden_kind"), max_abs_diff=data.get("max_abs_diff"),
                   top1_agreement=data.get("top1_agreement"), isa_note=data.get("isa_note"),
                   message=f"golden outputs match on this device: {count} images" if data.get("passed") else "",
                   tolerance=dict(data.get("tolerance") or {}), tolerance_basis=data.get("tolerance_basis"),
                   golden_recorded_on=data.get("golden_recorded_on"), device_isa=dict(data.get("device_isa") or {}))


@dataclass
class BoardFacts:
    """What only a run on a board reports (remote profile, deploy --inventory)."""

    machine: str = ""  # uname -m
    pushed: bool | None = None  # None: never reached the board; False: it was there already
    top1: float | None = None  # on the board, on the pushed evaluation images
    host_top1: float | None = None  # the same bundle and images on the host that built it
    state: dict[str, Any] = field(default_factory=dict)  # thermal, throttling, load, as the board says them
    steps: dict[str, float] = field(default_factory=dict)  # seconds: connect, push, build, verify, evaluate, ...
    runtime_call_p50_ms: float | None = None  # native rows: the runtime call alone
    overhead: float | None = None  # native rows: the runner's share over the runtime call


@dataclass
class BundleRun:
    """One bundle built, run or timed somewhere, and what came of it."""

    target: str
    precision: str
    status: Status
    reason: str = ""
    where: str = "host"  # "host", or the board's name
    runner: RunnerKind = RunnerKind.PYTHON
    bundle: str | None = None  # its folder on the host (deploy), or its name (a fleet)
    model: str | None = None  # which model (compare builds several)
    gate: GateFigures | None = None
    latency: dict[str, Latency] = field(default_factory=dict)  # "batch_1": ...
    memory: Memory = field(default_factory=Memory)
    verify: Verified | None = None
    size_bytes: int | None = None
    seconds: float = 0.0  # building it (deploy), or running it (compare's timing)
    reused: bool = False  # deploy: an earlier run's bundle, its inputs unchanged
    cpp_app: bool = False  # a C++ app can link it (its runtime has a native runner)
    board: BoardFacts | None = None

    @property
    def name(self) -> str:
        """How the recommendation and the race name it: 'onnxruntime int8'."""
        return f"{self.target} {self.precision}"

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def top1(self) -> float | None:
        """The accuracy that counts where it ran: on the board when the board scored it, else the gate's."""
        if self.board is not None and self.board.top1 is not None:
            return self.board.top1
        return None if self.gate is None else self.gate.top1

    @property
    def first_latency(self) -> Latency | None:
        """The latency of the first batch size measured (a board's row keeps only that one)."""
        return next(iter(self.latency.values()), None)

    def p50_ms(self, batch: int = 1) -> float | None:
        latency = self.latency.get(batch_key(batch))
        return None if latency is None else latency.p50_ms

    def notes(self) -> str:
        """The reason, and how the gate decided when it decided on a sample (or could not)."""
        return "; ".join(([self.reason] if self.reason else []) + (self.gate.notes() if self.gate else []))

    def to_dict(self) -> dict[str, Any]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "bundle run") -> "BundleRun":
        return decode(cls, data, origin)


def batch_key(batch: int) -> str:
    return f"batch_{batch}"


def profile_figures(report: Any) -> tuple[dict[str, Latency], Memory]:
    """A profile's latency per batch size and its memory (a ProfileReport, device/profiling/measure.py)."""
    latency = {batch_key(result.batch): Latency.from_stats(result.model) for result in report.results if result.model}
    return latency, Memory(peak_rss_mb=report.memory.peak_rss_mb, rss_added_mb=report.memory.added_mb)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (accuracy, cost) that no other point beats: at least as accurate and at most as costly,
    and better in one. The one front deploy's report (top-1 against latency) and compare's plot (accuracy against
    time per image) draw."""
    front = []
    for index, (accuracy, cost) in enumerate(points):
        beaten = any(a >= accuracy and c <= cost and (a > accuracy or c < cost) for a, c in points)
        if not beaten:
            front.append(index)
    return front


def runs_front(runs: Sequence[BundleRun], batch: int = 1) -> list[int]:
    """Indices of the ok runs with a top-1 and a p50 at ``batch`` on the Pareto front (higher top-1, lower p50)."""
    measured: list[tuple[int, float, float]] = []
    for index, run in enumerate(runs):
        top1, p50 = run.top1, run.p50_ms(batch)
        if run.ok and top1 is not None and p50 is not None:
            measured.append((index, top1, p50))
    return [measured[k][0] for k in pareto_front([(top1, p50) for _, top1, p50 in measured])]
