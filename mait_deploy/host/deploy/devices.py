"""`deploy --inventory`: the bundles that passed, run on the user's boards, and a recommendation per board.

On a board the host's race means nothing; the board's own figures decide: among the bundles that ran there, the
fastest p50 at batch 1 whose on-board top-1 is within the deploy's --max-accuracy-drop of the best on-board FP32
top-1 (the gate's own drop when no images were evaluated there), and never a reduced precision slower than its
target's FP32 on that board.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Sequence

from mait_deploy.precision import FP32
from mait_deploy.recommendation import Candidate, OwnLatency, recommend

DEVICES_FOLDER = "devices"


def _name(row: dict[str, Any]) -> str:
    return f"{row['target']} {row['precision']}"


def recommend_for_device(rows: Sequence[dict[str, Any]], max_drop: float, native_only: bool = False,
                         linkable: Collection[str] = ()) -> dict[str, Any] | None:
    """The bundle to ship on one board from its fleet rows (recommendation.recommend on the board's own p50s),
    with the reason and what was ruled out; None when nothing ran there.

    ``native_only`` (deploy --for native): among the bundles a C++ app can link (``linkable``, by bundle name),
    timed by the native runner's rows on the board; the Python rows still give the on-board top-1."""
    ran = [r for r in rows if r.get("runner", "python") == "python" and r["status"] == "ok"
           and (r.get("latency") or {}).get("p50_ms")]
    if not ran:
        return None
    native = {r["bundle"]: r for r in rows if r.get("runner") == "native"}
    fp32_top1 = [r["top1"] for r in ran if r["precision"] == FP32 and r.get("top1") is not None]
    reference = max(fp32_top1) if fp32_top1 else None
    candidates, latency = [], {}
    for row in ran:
        ruled_out, note = None, ""
        if reference is not None and row.get("top1") is not None:
            drop = (reference - row["top1"]) * 100
            note = f"on-board top-1 {row['top1'] * 100:.2f}%"
            if drop > max_drop:
                ruled_out = f"on-board top-1 {drop:.2f} points below the best FP32 here (limit {max_drop:g})"
        elif row.get("gate_drop") is not None and row["gate_drop"] > max_drop:
            ruled_out = f"gate drop {row['gate_drop']:.2f} points (limit {max_drop:g})"
        timed = row
        if native_only:
            timed = native.get(row["bundle"])
            if row["bundle"] not in linkable:
                ruled_out = ruled_out or "a C++ app cannot link it (no native runner for its runtime)"
            elif timed is None or timed["status"] != "ok" or not (timed.get("latency") or {}).get("p50_ms"):
                reason = "not run" if timed is None else timed.get("reason") or timed["status"]
                ruled_out = ruled_out or f"the native runner did not run it on this board ({reason})"
        if timed is not None and (timed.get("latency") or {}).get("p50_ms"):
            latency[_name(row)] = timed["latency"]["p50_ms"]
        candidates.append(Candidate(name=_name(row), target=row["target"], precision=row["precision"],
                                    bundle=row["bundle"], ruled_out=ruled_out, note=note))
    how = "by the native runner's p50 at batch 1" if native_only else "by its p50 at batch 1"
    choice = recommend(candidates, OwnLatency(latency, how=how), where="on this board")
    if not choice.chosen:
        return {"bundle": None, "reason": "no bundle passed on this board", "not_recommended": choice.not_recommended}
    return choice.to_dict()


def run_on_devices(rows: Sequence[Any], out_dir: Path, inventory: str, names: Sequence[str], tags: Sequence[str],
                   evaluation: str | None, eval_count: int | None, batches: Sequence[int], iterations: int,
                   max_drop: float, accept_new: bool = False, native_only: bool = False) -> dict[str, Any]:
    """Run every bundle that passed on the inventory's boards; the fleet report plus one recommendation per board.
    ``native_only`` (deploy --for native): the native runner is built and profiled on the boards too, and each
    board's recommendation is among the bundles a C++ app can link, by the native runner's figures."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile
    from mait_deploy.host.remote.inventory import load_inventory, select

    devices = select(load_inventory(inventory), names, tags)
    bundles = [Path(row.bundle) for row in rows if row.status == "ok" and row.bundle]
    if not bundles:
        return {"fleet": None, "recommended": {}, "reason": "no bundle passed on the host"}
    options = ProfileOptionsRemote(batches=tuple(batches), iterations=iterations, native=native_only)
    fleet = remote_profile(devices, bundles, out_dir / DEVICES_FOLDER, eval_source=evaluation,
                           eval_count=eval_count, options=options, accept_new=accept_new, force=True)
    linkable = {b["name"] for b in fleet["bundles"] if b["cpp_app"]}
    recommended = {device.name: recommend_for_device([r for r in fleet["rows"] if r["device"] == device.name],
                                                     max_drop, native_only, linkable) for device in devices}
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
