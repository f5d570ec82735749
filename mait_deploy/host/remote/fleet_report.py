"""The fleet report: fleet.json (every row), fleet.md (a table a person reads) and fleet.png (device x bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mait_deploy._io import atomic_path, write_json
from mait_deploy._plots import pyplot, save_png

COLUMNS = ("device", "machine", "bundle", "runner", "C++ app", "status", "top-1", "host top-1", "board - host",
           "gate top-1",
           "p50 ms", "p99 ms", "img/s", "peak MB", "state", "push s", "build s", "verify s", "eval s", "profile s")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def _state(row: dict[str, Any]) -> str:
    """The hottest thermal zone and any Raspberry Pi throttling flag, as the board reported them after profiling."""
    state = row.get("device_state") or {}
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


def failure_line(report: dict[str, Any], where: str) -> str | None:
    """The error line of a fleet run with failed rows (how many, the first one's board, bundle and reason, then
    ``where`` the report is), or None when none failed."""
    failed = [row for row in report["rows"] if row["status"] == "failed"]
    if not failed:
        return None
    first = failed[0]
    return (f"{len(failed)} of {len(report['rows'])} device x bundle run(s) failed on the boards (first: "
            f"{first['device']}, {first['bundle']}: {str(first.get('reason') or 'no reason')[:200]}); {where}")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """One list of cells per row, in COLUMNS order (shared by the terminal table and the markdown)."""
    cells = []
    # Whether the bundle goes into a C++ app (mait-deploy app): its runtime has a native runner.
    cpp_app = {bundle["name"]: bundle.get("cpp_app") for bundle in report.get("bundles", ())}
    for row in report["rows"]:
        delta = None
        if row.get("top1") is not None and row.get("host_top1") is not None:
            delta = (row["top1"] - row["host_top1"]) * 100
        latency = row.get("latency") or {}
        steps = row.get("steps") or {}
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row.get('reason', '')}"
        cells.append([
            row["device"], row.get("machine", ""), row["bundle"], row.get("runner", "python"),
            {True: "yes", False: "no"}.get(cpp_app.get(row["bundle"]), ""), status, _pct(row.get("top1")),
            _pct(row.get("host_top1")), "" if delta is None else f"{delta:+.2f}", _pct(row.get("gate_top1")),
            f"{latency['p50_ms']:.2f}" if latency.get("p50_ms") else "",
            f"{latency['p99_ms']:.2f}" if latency.get("p99_ms") else "",
            f"{latency['throughput']:.1f}" if latency.get("throughput") else "",
            f"{row['peak_rss_mb']:.0f}" if row.get("peak_rss_mb") else "", _state(row),
            # A native row's verify is its golden self-test; its build is the board's (0: built by an earlier run).
            *(f"{steps[k]:.1f}" if k in steps else "" for k in ("push", "build", "selftest" if "selftest" in steps
                                                                 else "verify", "evaluate", "profile"))])
    return cells


def markdown(report: dict[str, Any]) -> str:
    evaluation = report.get("evaluation")
    lines = [f"# Fleet report ({report['created']}, {report['seconds']:.0f} s)", ""]
    if evaluation:
        lines += [f"On-board top-1 on {evaluation['count']} held-out images ({evaluation['origin']}); "
                  "'host top-1' is the same bundle on the same images on the host that built it.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for cells in table_rows(report):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> bool:
    """p50 latency per bundle, one group per device, top-1 written on each bar; False when nothing ran."""
    rows = [{**r, "bundle": r["bundle"] + (" (native)" if r.get("runner") == "native" else "")}
            for r in report["rows"] if r["status"] == "ok" and (r.get("latency") or {}).get("p50_ms")]
    if not rows:
        return False
    plt = pyplot()
    devices = list(dict.fromkeys(r["device"] for r in rows))
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    width = 0.8 / len(bundles)
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(devices) * max(1, len(bundles) / 3)), 4.2))
    for b, bundle in enumerate(bundles):
        for d, device in enumerate(devices):
            match = [r for r in rows if r["device"] == device and r["bundle"] == bundle]
            if not match:
                continue
            row = match[0]
            x = d + (b - (len(bundles) - 1) / 2) * width
            axis.bar(x, row["latency"]["p50_ms"], width, color=f"C{b}", label=bundle if d == 0 else None)
            if row.get("top1") is not None:
                axis.annotate(f"{row['top1'] * 100:.1f}%", (x, row["latency"]["p50_ms"]), ha="center",
                              va="bottom", fontsize=7, rotation=90)
    axis.set_xticks(range(len(devices)), devices)
    axis.set_ylabel("p50 latency, batch 1 (ms)")
    axis.set_title("Fleet: latency per device and bundle (on-board top-1 on the bars)")
    axis.legend(fontsize=7, ncol=2)
    save_png(figure, path)
    return True


def write_fleet_report(report: dict[str, Any], out: Path) -> None:
    write_json(out / "fleet.json", report)
    with atomic_path(out / "fleet.md", suffix=".md") as temp:
        temp.write_text(markdown(report), encoding="utf-8")
    report["plot"] = "fleet.png" if plot(report, out / "fleet.png") else None
