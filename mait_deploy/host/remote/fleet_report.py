"""The fleet report: fleet.json (every row), fleet.md (a table a person reads) and fleet.png (device x bundle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.results import BundleRun, RunnerKind, Status
from mait_deploy.typed_json import decode, encode

FLEET_SCHEMA_VERSION = 2  # 2: rows are BundleRuns (mait_deploy/results.py)


@dataclass
class FleetBundle:
    name: str
    target: str
    precision: str
    sha256: str  # of its manifest
    cpp_app: bool  # a C++ app can link it (its runtime has a native runner)


@dataclass
class FleetEvaluation:
    origin: str
    count: int
    host: dict[str, dict[str, object]]  # bundle -> its top-1 on the same images on this host, or the error


@dataclass
class FleetReport:
    """One fleet run (remote profile, deploy --inventory): a BundleRun per board x bundle x runner."""

    created: str
    seconds: float
    device_seconds: dict[str, float]
    devices: list[dict[str, object]]  # the inventory's devices, as given
    bundles: list[FleetBundle]
    evaluation: FleetEvaluation | None
    profile_options: dict[str, object]
    rows: list[BundleRun] = field(default_factory=list)
    plot: str | None = None  # fleet.png, once written
    schema: str = "mait-deploy.fleet"
    schema_version: int = FLEET_SCHEMA_VERSION

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: object, origin: str = "fleet report") -> "FleetReport":
        return decode(cls, data, origin)

COLUMNS = ("device", "machine", "bundle", "runner", "C++ app", "status", "top-1", "host top-1", "board - host",
           "gate top-1",
           "p50 ms", "p99 ms", "img/s", "peak MB", "state", "push s", "build s", "verify s", "eval s", "profile s")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def _state(row: BundleRun) -> str:
    """The hottest thermal zone and any Raspberry Pi throttling flag, as the board reported them after profiling."""
    state = row.board.state if row.board else {}
    parts = []
    zones = state.get("thermal")
    if isinstance(zones, list) and zones:
        parts.append(f"{max(zone['temp_c'] for zone in zones):.0f} C")
    pi = state.get("raspberry_pi")
    if isinstance(pi, dict):
        if isinstance(pi.get("temp_c"), (int, float)) and not parts:
            parts.append(f"{pi['temp_c']:.0f} C")
        throttled = pi.get("throttled")
        if isinstance(throttled, dict) and throttled.get("flags"):
            parts.append("; ".join(throttled["flags"]))
    return ", ".join(parts)


def failure_line(report: FleetReport | None, where: str) -> str | None:
    """The error line of a fleet run with failed rows (how many, the first one's board, bundle and reason, then
    ``where`` the report is), or None when none failed."""
    failed = [row for row in report.rows if row.status is Status.FAILED] if report else []
    if not failed or report is None:
        return None
    first = failed[0]
    return (f"{len(failed)} of {len(report.rows)} device x bundle run(s) failed on the boards (first: "
            f"{first.where}, {first.bundle}: {(first.reason or 'no reason')[:200]}); {where}")


def table_rows(report: FleetReport) -> list[list[str]]:
    """One list of cells per row, in COLUMNS order (shared by the terminal table and the markdown)."""
    cells = []
    for row in report.rows:
        board = row.board
        top1, host_top1 = (board.top1, board.host_top1) if board else (None, None)
        delta = None if top1 is None or host_top1 is None else (top1 - host_top1) * 100
        latency = row.first_latency
        steps = board.steps if board else {}
        status = row.status.value if row.ok else f"{row.status.value}: {row.reason}"
        cells.append([
            row.where, board.machine if board else "", row.bundle or "", row.runner.value,
            "yes" if row.cpp_app else "no", status, _pct(top1), _pct(host_top1),
            "" if delta is None else f"{delta:+.2f}", _pct(row.gate.top1 if row.gate else None),
            f"{latency.p50_ms:.2f}" if latency and latency.p50_ms else "",
            f"{latency.p99_ms:.2f}" if latency and latency.p99_ms else "",
            f"{latency.throughput:.1f}" if latency and latency.throughput else "",
            f"{row.memory.peak_rss_mb:.0f}" if row.memory.peak_rss_mb else "", _state(row),
            # A native row's verify is its golden self-test; its build is the board's (0: built by an earlier run).
            *(f"{steps[k]:.1f}" if k in steps else "" for k in ("push", "build", "selftest" if "selftest" in steps
                                                                 else "verify", "evaluate", "profile"))])
    return cells


def markdown(report: FleetReport) -> str:
    evaluation = report.evaluation
    lines = [f"# Fleet report ({report.created}, {report.seconds:.0f} s)", ""]
    if evaluation:
        lines += [f"On-board top-1 on {evaluation.count} held-out images ({evaluation.origin}); "
                  "'host top-1' is the same bundle on the same images on the host that built it.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for cells in table_rows(report):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: FleetReport, path: Path) -> bool:
    """p50 latency per bundle, one group per device, top-1 written on each bar; False when nothing ran."""
    def label(row: BundleRun) -> str:
        return f"{row.bundle}{' (native)' if row.runner is RunnerKind.NATIVE else ''}"

    rows = [r for r in report.rows if r.ok and r.first_latency is not None and r.first_latency.p50_ms]
    if not rows:
        return False
    plt = pyplot()
    devices = list(dict.fromkeys(r.where for r in rows))
    bundles = list(dict.fromkeys(label(r) for r in rows))
    width = 0.8 / len(bundles)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(devices) * max(1, len(bundles) / 3)), 4.2))
    for b, bundle in enumerate(bundles):
        for d, device in enumerate(devices):
            match = [r for r in rows if r.where == device and label(r) == bundle]
            if not match:
                continue
            row = match[0]
            p50 = row.first_latency.p50_ms if row.first_latency and row.first_latency.p50_ms else 0.0
            x = d + (b - (len(bundles) - 1) / 2) * width
            axis.bar(x, p50, width, color=f"C{b}", label=bundle if d == 0 else None)
            top1 = row.board.top1 if row.board else None
            if top1 is not None:
                axis.annotate(f"{top1 * 100:.1f}%", (x, p50), ha="center", va="bottom", fontsize=7, rotation=90)
    axis.set_xticks(range(len(devices)), devices)
    axis.set_ylabel("p50 latency, batch 1 (ms)")
    axis.set_title("Fleet: latency per device and bundle (on-board top-1 on the bars)")
    axis.legend(fontsize=7, ncol=2)
    save_png(figure, path)
    return True


def write_fleet_report(report: FleetReport, out: Path) -> None:
    report.plot = "fleet.png" if plot(report, out / "fleet.png") else None
    write_json(out / "fleet.json", report.to_dict())
    with atomic_path(out / "fleet.md", suffix=".md") as temp:
        temp.write_text(markdown(report), encoding="utf-8")
