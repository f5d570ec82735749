"""The deploy report: one row per target x precision, the Pareto front, the recommendation, JSON/markdown/PNG."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mait_deploy import backends
from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.device.logits import GateResult
from mait_deploy.device.profiling.side_by_side import median_interval
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
    native: bool = False  # the C++ runner (mait-deploy app) can run this bundle
    gate_images: int | None = None  # the images top1, reference_top1 and drop_points were all measured on
    # Set when a sample was scored first and could not decide, so the gate went on to every image.
    gate_sample_undecided: int | None = None

    def take_gate(self, gate: GateResult | None, tried_sample: int | None = None) -> None:
        """The gate's figures; ``tried_sample``: the sample size the gate was asked to decide on first."""
        if gate:
            self.top1, self.reference_top1, self.drop_points = gate.top1, gate.reference_top1, gate.drop_points
            self.gate_images = gate.count
            if gate.sampled_from:
                self.gate_sample = {"count": gate.count, "of": gate.sampled_from, "drop_interval": gate.drop_interval}
            elif tried_sample and tried_sample < gate.count:
                self.gate_sample_undecided = tried_sample

    def measured_on(self) -> str:
        """Which images the row's top-1 and drop are on: '2000 of 10000 (sample)' or '10000 (all)'."""
        if self.gate_images is None:
            return "-"
        if self.gate_sample:
            return f"{self.gate_images} of {self.gate_sample['of']} (sample)"
        return f"{self.gate_images} (all)"

    def notes(self) -> str:
        """The reason, and how the gate decided when it decided on a sample (or could not)."""
        notes = [self.reason] if self.reason else []
        if self.gate_sample:
            low, high = self.gate_sample["drop_interval"]
            notes.append(f"drop's 99% interval over all {self.gate_sample['of']} images {low:+.2f} to {high:+.2f}")
        elif self.gate_sample_undecided:
            notes.append(f"a {self.gate_sample_undecided}-image sample could not decide the gate (its interval "
                         f"reached the limit): scored on all {self.gate_images}")
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
        dominated = any((a >= acc and ms <= lat) and (a > acc or ms < lat) for _, a, ms in points)
        if not dominated:
            front.append(i)
    return front


def race_figures(side_by_side: dict[str, Any] | None) -> dict[str, tuple[float, float, float]]:
    """Each raced bundle's median latency (ms) in the side-by-side race and the interval of it (median_interval):
    name -> (median, low, high)."""
    if not side_by_side:
        return {}
    rounds = side_by_side["round_medians_ms"]
    return {name: (median, *median_interval([r[name] for r in rounds])[:2])
            for name, median in side_by_side["median_ms"].items()}


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
        cells = [row.target, row.precision, row.status + (" (reused)" if row.reused else ""),
                 "yes" if row.native else "no", "-" if row.top1 is None else f"{row.top1 * 100:.2f}%",
                 "-" if row.reference_top1 is None else f"{row.reference_top1 * 100:.2f}%",
                 "-" if row.drop_points is None else f"{row.drop_points:+.2f}", row.measured_on()]
        if raced:
            race = raced.get(f"{row.target} {row.precision}")
            cells.append("-" if race is None else f"{race[0]:.3f} ({race[1]:.3f}-{race[2]:.3f})")
        for key in batches:
            lat = row.latency.get(key)
            cells += ["-", "-", "-"] if lat is None else [f"{lat.p50_ms:.2f}", f"{lat.p99_ms:.2f}",
                                                          f"{lat.throughput:.0f}"]
        cells += ["-" if row.size_bytes is None else f"{row.size_bytes / 1e6:.2f}",
                  "-" if row.rss_added_mb is None else f"{row.rss_added_mb:.0f}",
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
        from mait_deploy.host.deploy.devices import markdown as devices_markdown

        text += devices_markdown(report.devices)
    return text


def _colour(target: str) -> str:
    return backends.get(target).colour if target in backends.names() else "grey"


def _place_labels(ax: Any, points: Sequence[tuple[float, float, str]]) -> None:
    """Annotate points so that no two labels overlap: each label takes the first of a few offsets whose box (in
    display pixels, estimated from the text length) misses the boxes already placed."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits, so data -> pixel is final
    placed: list[tuple[float, float, float, float]] = []
    offsets = [(5, 4), (5, -12), (5, 14), (5, -22), (5, 24), (-60, 4), (-60, -12), (5, 34), (5, -32)]
    for x, y, text in sorted(points):
        px, py = ax.transData.transform((x, y))
        width, height = 5.2 * len(text) + 2, 11.0
        chosen = offsets[0]
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
    rows = [r for r in report.rows if r.status == "ok" and r.top1 is not None and "batch_1" in r.latency]
    if not rows:
        return False
    plt = pyplot()
    raced = race_figures(report.side_by_side)
    front = set(pareto_front(report.rows))
    chosen = report.recommended.name if report.recommended else None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labels = []
    for target in dict.fromkeys(r.target for r in rows):
        ax.scatter([], [], s=40, color=_colour(target), label=target)  # one legend entry per target
    for index, row in enumerate(report.rows):
        if row not in rows:
            continue
        name = f"{row.target} {row.precision}"
        y = row.top1 * 100
        if name in raced:
            x, low, high = raced[name]
            ax.errorbar(x, y, xerr=[[x - low], [high - x]], color=_colour(row.target), alpha=0.6, capsize=2,
                        linewidth=1)
        else:
            x = row.latency["batch_1"].p50_ms
        ax.scatter(x, y, s=max(30, (row.size_bytes or 0) / 2e4), color=_colour(row.target), alpha=0.7,
                   edgecolors="k" if index in front else "none", linewidths=2 if index in front else 0)
        if name == chosen:
            ax.scatter(x, y, s=260, marker="*", color="gold", edgecolors="k", linewidths=1, zorder=5,
                       label=f"recommended: {name}")
        labels.append((x, y, row.precision if name != chosen else f"{row.precision} (pick)"))
    front_points = sorted(((raced.get(f"{report.rows[i].target} {report.rows[i].precision}") or
                            (report.rows[i].latency["batch_1"].p50_ms,))[0], report.rows[i].top1 * 100)
                          for i in front)
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
