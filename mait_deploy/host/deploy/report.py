"""The deploy report: one row per target x precision, the Pareto front, the recommendation, JSON/markdown/PNG."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mait_deploy import backends
from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.device.compare import GateResult
from mait_deploy.device.profiling.stats import Latency
from mait_deploy.recommendation import Recommendation

REPORT_SCHEMA_VERSION = 1
STATUSES = ("ok", "failed_gate", "failed", "skipped")


@dataclass
class Row:
    target: str
    precision: str
    status: str
    reason: str = ""
    bundle: str | None = None
    reused: bool = False
    top1: float | None = None
    reference_top1: float | None = None
    drop_points: float | None = None
    size_bytes: int | None = None
    latency: dict[str, Latency] = field(default_factory=dict)  # "batch_1": ...
    peak_rss_mb: float | None = None  # of the whole process that profiled it (deploy: every bundle before it too)
    rss_added_mb: float | None = None  # what loading and running this bundle added to that process
    verify: dict[str, Any] | None = None
    seconds: float = 0.0
    # A gate that decided on a sample: {"count": n, "of": N, "drop_interval": [low, high]} (points, 99%).
    gate_sample: dict[str, Any] | None = None

    def take_gate(self, gate: GateResult | None) -> None:
        if gate:
            self.top1, self.reference_top1, self.drop_points = gate.top1, gate.reference_top1, gate.drop_points
            if gate.sampled_from:
                self.gate_sample = {"count": gate.count, "of": gate.sampled_from, "drop_interval": gate.drop_interval}

    def notes(self) -> str:
        """The reason, and how the gate decided when it decided on a sample."""
        notes = [self.reason] if self.reason else []
        if self.gate_sample:
            low, high = self.gate_sample["drop_interval"]
            notes.append(f"gate on {self.gate_sample['count']} of {self.gate_sample['of']} images (drop's 99% "
                         f"interval {low:+.2f} to {high:+.2f})")
        return "; ".join(notes)

    def take_profile(self, report: Any) -> None:
        for result in report.results:
            if result.model:
                self.latency[f"batch_{result.batch}"] = Latency.from_stats(result.model)
        self.peak_rss_mb = report.memory.get("peak_rss_mb")
        if "load_increase_mb" in report.memory:
            self.rss_added_mb = round(report.memory["load_increase_mb"] + report.memory["run_increase_mb"], 1)


@dataclass
class DeployReport:
    schema_version: int
    created: str
    checkpoint: dict[str, Any]
    options: dict[str, Any]
    export: dict[str, Any]
    rows: list[Row]
    recommended: Recommendation | None  # recommendation.recommend over the race (race.py)
    machine: dict[str, Any]
    seconds: float
    side_by_side: dict[str, Any] | None = None  # the race the recommendation comes from (race.py)
    devices: dict[str, Any] | None = None  # deploy --inventory: the fleet report and one recommendation per board

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_front(rows: Sequence[Row], batch_key: str = "batch_1") -> list[int]:
    """Indices of ok rows not dominated in (higher top-1, lower p50 latency)."""
    points = [(i, r.top1, r.latency[batch_key].p50_ms) for i, r in enumerate(rows)
              if r.status == "ok" and r.top1 is not None and batch_key in r.latency]
    front = []
    for i, acc, lat in points:
        dominated = any((a >= acc and l <= lat) and (a > acc or l < lat) for _, a, l in points)
        if not dominated:
            front.append(i)
    return front


def markdown_table(report: DeployReport) -> str:
    batches = sorted({k for row in report.rows for k in row.latency}, key=lambda k: int(k.split("_")[1]))
    head = ["target", "precision", "status", "top-1", "drop (pts)"]
    for key in batches:
        b = key.split("_")[1]
        head += [f"p50 b{b} (ms)", f"p99 b{b} (ms)", f"img/s b{b}"]
    head += ["size (MB)", "RSS added (MB)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = [row.target, row.precision, row.status + (" (reused)" if row.reused else ""),
                 "-" if row.top1 is None else f"{row.top1 * 100:.2f}%",
                 "-" if row.drop_points is None else f"{row.drop_points:+.2f}"]
        for key in batches:
            lat = row.latency.get(key)
            cells += ["-", "-", "-"] if lat is None else [f"{lat.p50_ms:.2f}", f"{lat.p99_ms:.2f}",
                                                          f"{lat.throughput:.0f}"]
        cells += ["-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.2f}",
                  "-" if row.rss_added_mb is None else f"{row.rss_added_mb:.0f}",
                  row.notes().replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if report.recommended:
        choice = report.recommended
        text += (f"\nRecommended for this machine: **{choice.target} {choice.precision}** ({choice.bundle}): "
                 f"{choice.reason}.\n")
        for name, why in choice.not_recommended.items():
            text += f"- Not recommended: {name}: {why}.\n"
    if report.devices is not None:
        from mait_deploy.host.deploy.devices import markdown as devices_markdown

        text += devices_markdown(report.devices)
    return text


def _colour(target: str) -> str:
    return backends.get(target).colour if target in backends.names() else "grey"


def plot_deploy(report: DeployReport, path: Path) -> bool:
    """Accuracy vs latency (batch 1), marker area = size, Pareto front marked. False when nothing to plot."""
    rows = [r for r in report.rows if r.status == "ok" and r.top1 is not None and "batch_1" in r.latency]
    if not rows:
        return False
    plt = pyplot()
    front = set(pareto_front(report.rows))
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, row in enumerate(report.rows):
        if row not in rows:
            continue
        x, y = row.latency["batch_1"].p50_ms, row.top1 * 100
        ax.scatter(x, y, s=max(30, row.size_bytes / 2e4), color=_colour(row.target), alpha=0.7,
                   edgecolors="k" if index in front else "none", linewidths=2 if index in front else 0)
        ax.annotate(f"{row.target} {row.precision}", (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    front_points = sorted((report.rows[i].latency["batch_1"].p50_ms, report.rows[i].top1 * 100) for i in front)
    if len(front_points) > 1:
        ax.plot(*zip(*front_points), "k--", linewidth=1, label="Pareto front")
        ax.legend()
    ax.set(xlabel="p50 latency at batch 1 (ms, this machine)", ylabel="top-1 (%)",
           title="accuracy vs latency (marker area = bundle size; black edge = Pareto front)")
    save_png(fig, path)
    return True


def write_deploy_report(report: DeployReport, out_dir: Path) -> None:
    write_json(out_dir / "report.json", report.to_dict())
    with atomic_path(out_dir / "report.md", suffix=".md") as temp:
        temp.write_text(markdown_table(report), encoding="utf-8")
    plot_deploy(report, out_dir / "report.png")
