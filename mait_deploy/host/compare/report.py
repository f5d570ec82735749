"""The comparison report: compare.json (everything), compare.md (the tables a person reads), compare.png
(throughput against counted FLOPs, one panel per target) and compare_pareto.png (throughput against the accuracy
each architecture's paper reports, one panel per target: which model is fastest at a given accuracy)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.results import BundleRun, batch_key, pareto_front

if TYPE_CHECKING:  # pragma: no cover
    from mait_deploy.host.compare.run import CompareCell, CompareReport

TIMING_COLUMNS = ("target", "precision", "batch", "model", "role", "GFLOPs", "median ms", "img/s")
RATIO_COLUMNS = ("target", "precision", "batch", "MaiT", "baseline", "x faster (median)", "95% interval", "min",
                 "max", "rounds")


def timing_rows(report: CompareReport) -> list[list[str]]:
    models = {m.name: m for m in report.models}
    rows = []
    for cell in report.cells:
        for row in cell.rows:
            model = models[row.model or ""]
            latency = row.latency[batch_key(cell.batch)]
            rows.append([cell.target, cell.precision, str(cell.batch), model.name, model.role,
                         "" if model.gflops is None else f"{model.gflops:.2f}", f"{latency.p50_ms:.2f}",
                         f"{latency.throughput:.1f}"])
    return rows


def ratio_rows(report: CompareReport) -> list[list[str]]:
    return [[cell.target, cell.precision, str(cell.batch), ratio.mait, ratio.baseline, f"{ratio.median:.2f}",
             f"{ratio.low:.2f}-{ratio.high:.2f}", f"{ratio.min:.2f}", f"{ratio.max:.2f}", str(cell.rounds)]
            for cell in report.cells for ratio in cell.throughput_ratios]


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)]


def markdown(report: CompareReport) -> str:
    machine = report.machine
    flags = machine.get("flags")
    flags_text = ", ".join(map(str, flags)) if isinstance(flags, list) and flags else "-"
    lines = ["# MaiT vs baselines, side by side", "",
             f"Machine: {machine.get('model', '?')} ({machine.get('machine', '?')}, int8 class "
             f"{machine.get('int8_class', '?')}); flags: {flags_text}.",
             "Each table cell group was timed in one process, round-robin in blocks (first call of each block "
             "dropped, order reversed every round); a ratio is the median of per-round ratios, with the "
             "distribution-free interval of that median and the rounds' min and max beside it. Weights are random "
             "unless a checkpoint was given: these are speed figures, not accuracy.", "",
             "## Models", "", "| model | role | origin | params (M) | GFLOPs | input | paper's ImageNet top-1 | note |",
             "|---|---|---|---|---|---|---|---|"]
    for model in report.models:
        params = "" if model.params is None else f"{model.params / 1e6:.2f}"
        gflops = "" if model.gflops is None else f"{model.gflops:.2f}"
        top1 = "" if model.paper_top1 is None else f"{model.paper_top1}% ({model.paper_source})"
        lines.append(f"| {model.name} | {model.role} | {model.origin} | {params} | {gflops} | "
                     f"{'x'.join(map(str, model.input_shape))} | {top1} | {model.note} |")
    lines += ["", "## Throughput ratios (MaiT over baseline; > 1: the MaiT is faster)", "",
              *_table(RATIO_COLUMNS, ratio_rows(report)), "", "## Timings", "",
              *_table(TIMING_COLUMNS, timing_rows(report))]
    if report.failures:
        lines += ["", "## Not built", "", "| model | target | precision | why |", "|---|---|---|---|"]
        lines += [f"| {f.model} | {f.target} | {f.precision} | {f.reason.replace('|', '/')} |"
                  for f in report.failures]
    return "\n".join(lines) + "\n"


def _panels(report: CompareReport, cells: list[CompareCell], x_of: Callable[[str], float | None], path: Path,
            xlabel: str, title: str, frontier: bool = False) -> None:
    """Images/s (log) against ``x_of(model)`` for every row it gives a value, one panel per target, one colour per
    precision x batch (filled: MaiT, hollow: baseline); with ``frontier``, each series' Pareto frontier dashed."""
    plt = pyplot()
    from matplotlib import ticker

    targets = list(dict.fromkeys(c.target for c in cells))
    figure, axes = plt.subplots(1, len(targets), figsize=(5.6 * len(targets), 4.6), squeeze=False)
    series = list(dict.fromkeys((c.precision, c.batch) for c in cells))
    for axis, target in zip(axes[0], targets):
        for cell in (c for c in cells if c.target == target):
            color = f"C{series.index((cell.precision, cell.batch))}"
            points = []
            for row in cell.rows:
                model = row.model or ""
                x = x_of(model)
                if x is None:
                    continue
                y, mait = _throughput(row, cell.batch), report.role(model) == "mait"
                points.append((x, y))
                axis.scatter(x, y, color=color, marker="o" if mait else "s", facecolors=color if mait else "none",
                             s=36)
                axis.annotate(model.split("_patch")[0], (x, y), fontsize=6, xytext=(3, 2),
                              textcoords="offset points")
            if frontier:
                line = frontier_line(points)
                axis.plot([p[0] for p in line], [p[1] for p in line], color=color, linewidth=0.8, linestyle="--",
                          drawstyle="steps-pre")
        for index, (precision, batch) in enumerate(series):
            axis.scatter([], [], color=f"C{index}", label=f"{precision}, batch {batch}")
        axis.set_yscale("log")
        for set_formatter in (axis.yaxis.set_major_formatter, axis.yaxis.set_minor_formatter):
            set_formatter(ticker.FormatStrFormatter("%g"))  # 20, 30, 40 rather than 2x10^1 on a log axis
        axis.set_xlabel(xlabel)
        axis.set_ylabel("images/s here")
        axis.set_title(f"{target} ({title})", fontsize=9)
        axis.legend(fontsize=7)
    save_png(figure, path)


def _throughput(row: BundleRun, batch: int) -> float:
    return row.latency[batch_key(batch)].throughput


def plot(report: CompareReport, path: Path) -> bool:
    """Throughput (img/s, log) against GFLOPs per image, one panel per target; False when nothing was timed."""
    gflops = {m.name: m.gflops for m in report.models if m.gflops}
    cells = [c for c in report.cells if any(r.model in gflops for r in c.rows)]
    if not cells:
        return False
    _panels(report, cells, gflops.get, path, "GFLOPs per image (counted, 2 per multiply-add)",
            "filled: MaiT, hollow: baseline")
    return True


def frontier_line(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (accuracy, throughput) points no other point beats on both (results.pareto_front, with the cost the
    time per image), by increasing accuracy."""
    front = pareto_front([(accuracy, 1.0 / throughput) for accuracy, throughput in points])
    return sorted({points[index] for index in front})


def pareto_plot(report: CompareReport, path: Path) -> bool:
    """Throughput (img/s, log) against the paper's ImageNet top-1, one panel per target, the frontier of each
    precision x batch drawn; False when fewer than two timed models have a paper figure."""
    top1 = {m.name: m.paper_top1 for m in report.models if m.paper_top1 is not None}
    cells = [c for c in report.cells if sum(r.model in top1 for r in c.rows) >= 2]
    if not cells:
        return False
    _panels(report, cells, top1.get, path, "ImageNet-1k top-1 (%), as each paper reports it",
            "filled: MaiT, hollow: baseline; dashed: frontier", frontier=True)
    return True


def write_report(report: CompareReport, out: Path) -> None:
    """compare.json, compare.md and the plots into ``out``; the report keeps the names of the plots drawn."""
    report.plot = "compare.png" if plot(report, out / "compare.png") else None
    report.pareto_plot = "compare_pareto.png" if pareto_plot(report, out / "compare_pareto.png") else None
    write_json(out / "compare.json", report.to_dict())
    with atomic_path(out / "compare.md", suffix=".md") as temp:
        temp.write_text(markdown(report), encoding="utf-8")
