"""`deploy --inventory`: the bundles that passed, run on the user's boards, and a recommendation per board.

On a board the host's race means nothing; the board's own figures decide: among the bundles that ran there, the
fastest p50 at batch 1 whose on-board top-1 is within the deploy's --max-accuracy-drop of the best on-board FP32
top-1 (the gate's own drop when no images were evaluated there), and never a reduced precision slower than its
target's FP32 on that board.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

DEVICES_FOLDER = "devices"


def _name(row: dict[str, Any]) -> str:
    return f"{row['target']} {row['precision']}"


def recommend_for_device(rows: Sequence[dict[str, Any]], max_drop: float) -> dict[str, Any] | None:
    """The bundle to ship on one board from its fleet rows, with the reason and what was ruled out."""
    ran = [r for r in rows if r["status"] == "ok" and (r.get("latency_ms") or {}).get("p50")]
    if not ran:
        return None
    p50 = {_name(r): r["latency_ms"]["p50"] for r in ran}
    fp32_top1 = [r["top1"] for r in ran if r["precision"] == "fp32" and r.get("top1") is not None]
    reference = max(fp32_top1) if fp32_top1 else None
    excluded: dict[str, str] = {}
    for row in ran:
        name, fp32 = _name(row), f"{row['target']} fp32"
        if reference is not None and row.get("top1") is not None:
            drop = (reference - row["top1"]) * 100
            if drop > max_drop:
                excluded[name] = f"on-board top-1 {drop:.2f} points below the best FP32 here (limit {max_drop:g})"
                continue
        elif row.get("gate_drop") is not None and row["gate_drop"] > max_drop:
            excluded[name] = f"gate drop {row['gate_drop']:.2f} points (limit {max_drop:g})"
            continue
        if row["precision"] != "fp32" and fp32 in p50 and p50[name] >= p50[fp32]:
            excluded[name] = f"not faster than {fp32} on this board ({p50[name]:.2f} vs {p50[fp32]:.2f} ms p50)"
    eligible = [r for r in ran if _name(r) not in excluded]
    if not eligible:
        return {"bundle": None, "reason": "no bundle passed on this board", "not_recommended": excluded}
    best = min(eligible, key=lambda r: r["latency_ms"]["p50"])
    reason = f"fastest here at batch 1 ({best['latency_ms']['p50']:.2f} ms p50"
    if best.get("top1") is not None:
        reason += f", on-board top-1 {best['top1'] * 100:.2f}%"
    reason += ")"
    others = sorted((r for r in eligible if r is not best), key=lambda r: r["latency_ms"]["p50"])
    if others:
        reason += f"; {others[0]['latency_ms']['p50'] / best['latency_ms']['p50']:.2f}x faster than {_name(others[0])}"
    return {"bundle": best["bundle"], "target": best["target"], "precision": best["precision"], "reason": reason,
            "not_recommended": excluded}


def run_on_devices(rows: Sequence[Any], out_dir: Path, inventory: str, names: Sequence[str], tags: Sequence[str],
                   evaluation: str | None, eval_count: int | None, batches: Sequence[int], iterations: int,
                   max_drop: float, accept_new: bool = False) -> dict[str, Any]:
    """Run every bundle that passed on the inventory's boards; the fleet report plus one recommendation per board."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile
    from mait_deploy.host.remote.inventory import load_inventory, select

    devices = select(load_inventory(inventory), names, tags)
    bundles = [Path(row.bundle) for row in rows if row.status == "ok" and row.bundle]
    if not bundles:
        return {"fleet": None, "recommended": {}, "reason": "no bundle passed on the host"}
    options = ProfileOptionsRemote(batches=tuple(batches), iterations=iterations)
    fleet = remote_profile(devices, bundles, out_dir / DEVICES_FOLDER, eval_source=evaluation,
                           eval_count=eval_count, options=options, accept_new=accept_new, force=True)
    recommended = {device.name: recommend_for_device([r for r in fleet["rows"] if r["device"] == device.name],
                                                     max_drop) for device in devices}
    return {"fleet": fleet, "recommended": recommended}


def markdown(devices: dict[str, Any]) -> str:
    from mait_deploy.host.remote.fleet_report import markdown as fleet_markdown

    if not devices.get("fleet"):
        return f"\n## On the devices\n\n{devices.get('reason', 'not run')}.\n"
    text = "\n## On the devices\n\n" + fleet_markdown(devices["fleet"]).split("\n", 2)[2]
    for device, choice in devices["recommended"].items():
        if choice is None:
            text += f"- **{device}**: nothing ran.\n"
            continue
        text += f"- **{device}**: {choice['bundle'] or 'none'}: {choice['reason']}.\n"
        for name, why in choice["not_recommended"].items():
            text += f"  - not {name}: {why}.\n"
    return text
