"""Profile reports: one versioned JSON schema, a terminal summary, and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from rich.text import Text

from mait_deploy._io import read_json, write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.device.profiling.measure import REPORT_SCHEMA_VERSION, ProfileReport
from mait_deploy.errors import MaitDeployError, ValidationError

FILE_SCHEMA = "mait-deploy/profile"


def save_reports(reports: Sequence[ProfileReport], path: str | Path) -> None:
    """Write reports to one JSON file: {"schema": ..., "schema_version": 1, "reports": [...]}."""
    write_json(path, {"schema": FILE_SCHEMA, "schema_version": REPORT_SCHEMA_VERSION,
                      "reports": [report.to_dict() for report in reports]})


def load_reports(path: str | Path) -> list[ProfileReport]:
    path = Path(path)
    data = read_json(path, MaitDeployError, "profile report")
    if not isinstance(data, dict) or data.get("schema") != FILE_SCHEMA:
        raise MaitDeployError(f"{path} is not a mait-deploy profile report")
    if data.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise MaitDeployError(f"{path} uses profile schema {data.get('schema_version')}; this version reads "
                              f"{REPORT_SCHEMA_VERSION}")
    try:
        return [ProfileReport.from_dict(report) for report in data["reports"]]
    except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise MaitDeployError(f"{path} is malformed: {err}") from err


def _cpu(report: ProfileReport) -> dict[str, object]:
    """The CPU part of the device's state before the profile ({} where it was not read)."""
    cpu = report.device.before.get("cpu")
    return cpu if isinstance(cpu, dict) else {}


def summary_rows(reports: Sequence[ProfileReport]) -> list[dict[str, Any]]:
    """One row per bundle and batch: the fixed summary block of the table and the comparison plots."""
    rows = []
    for report in reports:
        for result in report.results:
            row = {"bundle": Path(report.bundle.path).name, "target": report.bundle.target,
                   "precision": report.bundle.precision, "batch": result.batch, "mode": result.mode,
                   "device": _cpu(report).get("model", "?"),
                   "error": result.error}
            model = result.model
            if model:
                row.update({f"model_{k}": v for k, v in model.percentiles_ms.items()}, model_mean=model.mean_ms,
                           model_std=model.std_ms, model_min=model.min_ms, model_max=model.max_ms,
                           count=model.count, throughput=model.throughput, drift=model.drift)
            if result.runtime_reported:
                row["runtime_p50"] = result.runtime_reported.percentiles_ms.get("p50")
            if result.end_to_end:
                row["e2e_p50"] = result.end_to_end.percentiles_ms.get("p50")
            if result.preprocess:
                row["preprocess_p50"] = result.preprocess.percentiles_ms.get("p50")
            if result.throughput:
                row["throughput"] = result.throughput.images_per_s
                row["requests"] = result.throughput.requests_in_flight
            row["warmup_first_ms"] = result.warmup.first_ms if result.warmup else None
            row["peak_rss_mb"] = report.memory.peak_rss_mb
            row["top1"] = report.accuracy.top1 if report.accuracy else None
            rows.append(row)
    return rows


def _percentile_cell(key: str, fmt: Callable[[Any], str]) -> Callable[[dict[str, Any]], str]:
    return lambda row: fmt(row.get(f"model_{key}"))


def print_summary(reports: Sequence[ProfileReport], console: Any) -> None:
    """The summary table, as many columns as the console's width holds: the bundle's name whole and the latency
    figures first, then the rest by importance; what did not fit is named under the table (every figure is in
    the JSON report)."""
    from rich.table import Table

    if not reports:
        return
    percentile_keys = [f"p{p:g}".replace(".", "_") for p in reports[0].options.percentiles]
    rows = summary_rows(reports)
    own = any(row.get("runtime_p50") is not None for row in rows)  # the column only where a runtime times itself

    def fmt(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    # column -> (priority: lower shown first, cell of a row); the table keeps this order left to right.
    cells: dict[str, tuple[int, Callable[[dict[str, Any]], str]]] = {
        "bundle": (0, lambda row: row["bundle"]), "target": (9, lambda row: row["target"]),
        "precision": (8, lambda row: row["precision"]), "batch": (1, lambda row: str(row["batch"])),
        "mode": (10, lambda row: row["mode"]),
        **{f"{k} ms": (2 if k in ("p50", "p99") else 6, _percentile_cell(k, fmt)) for k in percentile_keys},
        "mean ms": (7, lambda row: fmt(row.get("model_mean"))),
        **({"own p50 ms": (11, lambda row: fmt(row.get("runtime_p50")))} if own else {}),
        "img/s": (3, lambda row: fmt(row.get("throughput"), 1)), "e2e p50 ms": (5, lambda row: fmt(row.get("e2e_p50"))),
        "warm-up 1st ms": (12, lambda row: fmt(row.get("warmup_first_ms"))),
        "drift": (13, lambda row: fmt(row.get("drift"), 3)),
        "peak RSS MB": (4, lambda row: fmt(row.get("peak_rss_mb"), 0)),
        "top-1": (4, lambda row: "-" if row["top1"] is None else f"{row['top1'] * 100:.2f}%"),
    }
    text = {column: [cell(row) if not row["error"] or column in ("bundle", "target", "precision", "batch", "mode")
                     else ("failed" if column == "p50 ms" else "") for row in rows]
            for column, (_, cell) in cells.items()}
    width = console.width or 160
    shown, used = set(), 1
    for column in sorted(cells, key=lambda c: cells[c][0]):
        need = max([len(column), *(len(v) for v in text[column])]) + 3
        if used + need <= width or column == "bundle":
            shown.add(column)
            used += need
    columns = [column for column in cells if column in shown]
    table = Table(title="profile (model = runtime call only; own = the runtime's own timing where it keeps one; "
                        "e2e = preprocess + inference + softmax)")
    for column in columns:
        table.add_column(column, no_wrap=True,
                         justify="left" if column in ("bundle", "target", "precision", "mode") else "right")
    failures = []  # said below the table, whole: a narrow cell would fold a reason one word per line
    for index, row in enumerate(rows):
        if row["error"]:
            failures.append(f"{row['bundle']} batch {row['batch']}: {row['error']}")
        table.add_row(*(Text(text[column][index], style="red" if text[column][index] == "failed" else "")
                        for column in columns))
    console.print(table)
    left_out = [column for column in cells if column not in shown]
    if left_out:
        console.print(f"left out at this width: {', '.join(left_out)} (every figure: --json FILE)", highlight=False)
    report = reports[0]
    cpu = _cpu(report)
    console.print(f"device: {cpu.get('model', '?')} ({cpu.get('cores', '?')} cores, governors "
                  f"{cpu.get('governors', '?')}), load {report.device.before.get('load_avg')}; runtime "
                  f"{report.runtime}", highlight=False, soft_wrap=True)
    for line in failures:
        console.print(Text(line, style="red"), soft_wrap=True)
    for report in reports:
        if report.error and not any(result.error and report.error.endswith(result.error) for result in report.results):
            console.print(Text(f"{report.bundle.path}: {report.error}", style="red"), soft_wrap=True)


def plot_reports(reports: Sequence[ProfileReport], path: str | Path) -> None:
    """One bundle: latency histogram + per-iteration time series. Several: p50 with p90/p99 whiskers per bundle
    and batch, plus accuracy vs latency when the bundles carry accuracy results."""
    plt = pyplot()
    measured = [(r, res) for r in reports for res in r.results if res.model]
    if not measured:
        raise MaitDeployError("nothing to plot: no latency measurements (throughput mode or failed runs)")
    if len(measured) == 1:
        report, result = measured[0]
        stats = result.model
        assert stats is not None  # measured: results with a latency
        fig, (hist, series) = plt.subplots(1, 2, figsize=(11, 4))
        hist.hist(result.samples_ms, bins=min(50, max(10, len(result.samples_ms) // 5)), color="#4c72b0")
        for key, style in (("p50", "-"), ("p99", "--")):
            value = stats.percentiles_ms.get(key)
            if value is not None:
                hist.axvline(value, color="k", linestyle=style, label=f"{key} {value:.2f} ms")
        hist.set(xlabel="latency (ms)", ylabel="iterations", title="latency histogram")
        hist.legend()
        series.plot(result.samples_ms, linewidth=0.8)
        series.set(xlabel="iteration", ylabel="latency (ms)", title=f"time series (drift {stats.drift})")
        fig.suptitle(f"{Path(report.bundle.path).name} ({report.bundle.target} {report.bundle.precision}, "
                     f"batch {result.batch})")
    else:
        with_accuracy = [(r, res) for r, res in measured if r.accuracy]
        fig, axes = plt.subplots(1, 2 if with_accuracy else 1, figsize=(12 if with_accuracy else 7, 4.5),
                                 squeeze=False)
        bars = axes[0][0]
        labels = [f"{r.bundle.target}\n{r.bundle.precision} b{res.batch}" for r, res in measured]
        p50 = [res.model.percentiles_ms["p50"] for _, res in measured if res.model]
        p90 = [res.model.percentiles_ms.get("p90", p) for (_, res), p in zip(measured, p50) if res.model]
        p99 = [res.model.percentiles_ms.get("p99", p) for (_, res), p in zip(measured, p50) if res.model]
        positions = range(len(measured))
        bars.bar(positions, p50, color="#4c72b0", label="p50")
        bars.errorbar(positions, p50, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90)]], fmt="none",
                      ecolor="#dd8452", capsize=6, label="p90")
        bars.errorbar(positions, p50, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p99)]], fmt="none",
                      ecolor="#c44e52", capsize=3, label="p99")
        bars.set_xticks(list(positions), labels, fontsize=7)
        bars.set(ylabel="latency per call (ms)", title="model latency")
        bars.legend()
        if with_accuracy:
            scatter = axes[0][1]
            for report, result in with_accuracy:
                if result.model is None or report.accuracy is None:
                    continue
                point = (result.model.percentiles_ms["p50"], report.accuracy.top1 * 100)
                scatter.scatter(*point, s=max(20, report.bundle.artifact_bytes / 2e4))
                scatter.annotate(f"{report.bundle.target} {report.bundle.precision} b{result.batch}", point,
                                 fontsize=7)
            scatter.set(xlabel="p50 latency (ms)", ylabel="top-1 (%)", title="accuracy vs latency (area = size)")
    save_png(fig, path)
