"""The deploy report: one row per target x precision, the Pareto front, the recommendation, JSON/markdown/PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mait_deploy import backends
from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.device.profiling.side_by_side import SideBySide
from mait_deploy.host.deploy.devices import DevicesReport
from mait_deploy.host.deploy.devices import markdown as devices_markdown
from mait_deploy.recommendation import Recommendation
from mait_deploy.results import BundleRun, GateFigures, runs_front
from mait_deploy.typed_json import encode

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

REPORT_SCHEMA_VERSION = 2  # 2: rows are BundleRuns (mait_deploy/results.py)


@dataclass
class DeployReport:
    schema_version: int
    created: str
    checkpoint: dict[str, object]
    options: dict[str, object]
    export: dict[str, object]
    rows: list[BundleRun]
    recommended: Recommendation | None  # recommendation.recommend over the race (race.py)
    machine: dict[str, object]
    seconds: float
    side_by_side: SideBySide | None = None  # the race the recommendation comes from (race.py)
    devices: DevicesReport | None = None  # deploy --inventory: the fleet report and one recommendation per board

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))


def race_figures(side_by_side: SideBySide | None) -> dict[str, tuple[float, float, float]]:
    """Each raced bundle's median latency (ms) in the side-by-side race and the interval of it (median_interval):
    name -> (median, low, high)."""
    if not side_by_side:
        return {}
    figures = {}
    for name, median in side_by_side.median_ms.items():
        low, high = side_by_side.latency_interval(name)
        figures[name] = (median, low, high)
    return figures


def markdown_table(report: DeployReport) -> str:
    batches = sorted({k for row in report.rows for k in row.latency}, key=lambda k: int(k.split("_")[1]))
    raced = race_figures(report.side_by_side)
    head = ["target", "precision", "status", "C++ app", "top-1", "FP32 top-1", "drop (pts)", "gate images"]
    if raced:
        head.append("race b1 (ms)")
    for key in batches:
        b = key.split("_")[1]
        head += [f"p50 b{b} (ms)", f"p99 b{b} (ms)", f"img/s b{b}"]
    head += ["size (MB)", "RSS added (MB)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        gate = row.gate or GateFigures()
        cells = [row.target, row.precision, row.status.value + (" (reused)" if row.reused else ""),
                 "yes" if row.cpp_app else "no", "-" if gate.top1 is None else f"{gate.top1 * 100:.2f}%",
                 "-" if gate.reference_top1 is None else f"{gate.reference_top1 * 100:.2f}%",
                 "-" if gate.drop_points is None else f"{gate.drop_points:+.2f}", gate.measured_on()]
        if raced:
            race = raced.get(row.name)
            cells.append("-" if race is None else f"{race[0]:.3f} ({race[1]:.3f}-{race[2]:.3f})")
        for key in batches:
            lat = row.latency.get(key)
            cells += ["-", "-", "-"] if lat is None else [f"{lat.p50_ms:.2f}", f"{lat.p99_ms:.2f}",
                                                          f"{lat.throughput:.0f}"]
        cells += ["-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.2f}",
                  "-" if row.memory.rss_added_mb is None else f"{row.memory.rss_added_mb:.0f}",
                  row.notes().replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    text += ("\ntop-1, FP32 top-1 and drop are measured on the same images (gate images: a fixed sample, or all of "
             "the held-out set where the sample could not decide the gate)."
             + (" race b1: the side-by-side race's median at batch 1 and its 95% interval, the figures the "
                "recommendation uses; p50/p99: each bundle profiled on its own.\n" if raced else "\n"))
    if report.recommended:
        choice = report.recommended
        text += (f"\nRecommended for this machine: **{choice.target} {choice.precision}** ({choice.bundle}): "
                 f"{choice.reason}.\n")
        for name, why in choice.not_recommended.items():
            text += f"- Not recommended: {name}: {why}.\n"
    if report.devices is not None:
        text += devices_markdown(report.devices)
    return text


def _colour(target: str) -> str:
    return backends.get(target).colour if target in backends.names() else "grey"


def _place_labels(ax: Axes, points: Sequence[tuple[float, float, str]]) -> None:
    """Annotate points so that no two labels overlap: each label takes the first of a few offsets whose box (in
    display pixels, estimated from the text length) misses the boxes already placed."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits, so data -> pixel is final
    placed: list[tuple[float, float, float, float]] = []
    offsets = [(5, 4), (5, -12), (5, 14), (5, -22), (5, 24), (-60, 4), (-60, -12), (5, 34), (5, -32)]
    for x, y, text in sorted(points):
        px, py = ax.transData.transform((x, y))
        width, height = 5.2 * len(text) + 2, 11.0
        chosen: tuple[float, float] = offsets[0]
        for dx, dy in offsets:
            left, bottom = px + (dx if dx > 0 else -width - 5), py + dy
            box = (left, bottom, left + width, bottom + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                chosen = (dx if dx > 0 else -width - 5, dy)
                placed.append(box)
                break
        ax.annotate(text, (x, y), fontsize=7, xytext=chosen, textcoords="offset points")


def plot_deploy(report: DeployReport, path: Path) -> bool:
    """Accuracy vs latency at batch 1: the race's median and its interval where the bundle was raced (the figures
    the recommendation is chosen on), else its own profile's p50; colour = target, marker area = size, the Pareto
    front dashed, the recommended bundle starred. False when nothing to plot."""
    rows = [r for r in report.rows if r.ok and r.top1 is not None and r.p50_ms(1) is not None]
    if not rows:
        return False
    plt = pyplot()
    raced = race_figures(report.side_by_side)
    front = set(runs_front(report.rows))
    chosen = report.recommended.name if report.recommended else None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labels = []
    for target in dict.fromkeys(r.target for r in rows):
        ax.scatter([], [], s=40, color=_colour(target), label=target)  # one legend entry per target
    for index, row in enumerate(report.rows):
        if row not in rows:
            continue
        name = row.name
        y = (row.top1 or 0.0) * 100
        if name in raced:
            x, low, high = raced[name]
            ax.errorbar(x, y, xerr=[[x - low], [high - x]], color=_colour(row.target), alpha=0.6, capsize=2,
                        linewidth=1)
        else:
            x = row.p50_ms(1) or 0.0
        ax.scatter(x, y, s=max(30, (row.size_bytes or 0) / 2e4), color=_colour(row.target), alpha=0.7,
                   edgecolors="k" if index in front else "none", linewidths=2 if index in front else 0)
        if name == chosen:
            ax.scatter(x, y, s=260, marker="*", color="gold", edgecolors="k", linewidths=1, zorder=5,
                       label=f"recommended: {name}")
        labels.append((x, y, row.precision if name != chosen else f"{row.precision} (pick)"))
    front_points = sorted(((raced.get(report.rows[i].name) or (report.rows[i].p50_ms(1),))[0],
                           (report.rows[i].top1 or 0.0) * 100) for i in front)
    if len(front_points) > 1:
        ax.plot(*zip(*front_points), "k--", linewidth=1, label="Pareto front")
    measure = "race median, 95% interval" if raced else "own profile's p50"
    ax.set(xlabel=f"latency at batch 1, ms ({measure}; this machine)", ylabel="top-1 on the gate images (%)")
    ax.set_title("accuracy vs latency\n(marker area = bundle size; black edge = Pareto front)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    _place_labels(ax, labels)
    save_png(fig, path)
    return True


def write_deploy_report(report: DeployReport, out_dir: Path) -> None:
    write_json(out_dir / "report.json", report.to_dict())
    with atomic_path(out_dir / "report.md", suffix=".md") as temp:
        temp.write_text(markdown_table(report), encoding="utf-8")
    plot_deploy(report, out_dir / "report.png")
