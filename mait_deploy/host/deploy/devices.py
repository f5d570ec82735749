"""`deploy --inventory`: the bundles that passed, run on the user's boards, and a recommendation per board.

On a board the host's race means nothing; the board's own figures decide: among the bundles that ran there, the
fastest p50 at batch 1 whose on-board top-1 is within the deploy's --max-accuracy-drop of the best on-board FP32
top-1 (the gate's own drop when no images were evaluated there), and never a reduced precision slower than its
target's FP32 on that board.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Sequence

from mait_deploy.host.remote.fleet_report import FleetReport
from mait_deploy.host.remote.fleet_report import markdown as fleet_markdown
from mait_deploy.host.remote.inventory import load_inventory, select
from mait_deploy.precision import FP32
from mait_deploy.recommendation import Candidate, OwnLatency, Recommendation, recommend
from mait_deploy.results import BundleRun, RunnerKind
from mait_deploy.typed_json import decode, encode

DEVICES_FOLDER = "devices"


@dataclass
class DevicesReport:
    """deploy --inventory's part of the report: the fleet run and one recommendation per board."""

    fleet: FleetReport | None
    recommended: dict[str, Recommendation | None] = field(default_factory=dict)  # board -> None: nothing ran there
    reason: str = ""  # why the boards ran nothing

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: object, origin: str = "devices report") -> "DevicesReport":
        return decode(cls, data, origin)


def recommend_for_device(rows: Sequence[BundleRun], max_drop: float, native_only: bool = False,
                         linkable: Collection[str] = ()) -> Recommendation | None:
    """The bundle to ship on one board from its fleet rows (recommendation.recommend on the board's own p50s),
    with the reason and what was ruled out; None when nothing ran there.

    ``native_only`` (deploy --for native): among the bundles a C++ app can link (``linkable``, by bundle name),
    timed by the native runner's rows on the board; the Python rows still give the on-board top-1."""
    ran = [r for r in rows if r.runner is RunnerKind.PYTHON and r.ok and _first_p50(r) is not None]
    if not ran:
        return None
    native = {r.bundle: r for r in rows if r.runner is RunnerKind.NATIVE}
    fp32_top1 = [r.board.top1 for r in ran if r.precision == FP32 and r.board and r.board.top1 is not None]
    reference = max(fp32_top1) if fp32_top1 else None
    candidates, latency = [], {}
    for row in ran:
        ruled_out, note = None, ""
        on_board = row.board.top1 if row.board else None
        gate_drop = row.gate.drop_points if row.gate else None
        if reference is not None and on_board is not None:
            drop = (reference - on_board) * 100
            note = f"on-board top-1 {on_board * 100:.2f}%"
            if drop > max_drop:
                ruled_out = f"on-board top-1 {drop:.2f} points below the best FP32 here (limit {max_drop:g})"
        elif gate_drop is not None and gate_drop > max_drop:
            ruled_out = f"gate drop {gate_drop:.2f} points (limit {max_drop:g})"
        timed: BundleRun | None = row
        if native_only:
            timed = native.get(row.bundle)
            if row.bundle not in linkable:
                ruled_out = ruled_out or "a C++ app cannot link it (no native runner for its runtime)"
            elif timed is None or not timed.ok or _first_p50(timed) is None:
                reason = "not run" if timed is None else timed.reason or timed.status.value
                ruled_out = ruled_out or f"the native runner did not run it on this board ({reason})"
        p50 = None if timed is None else _first_p50(timed)
        if p50 is not None:
            latency[row.name] = p50
        candidates.append(Candidate.of(row, ruled_out=ruled_out, note=note))
    how = "by the native runner's p50 at batch 1" if native_only else "by its p50 at batch 1"
    choice = recommend(candidates, OwnLatency(latency, how=how), where="on this board")
    if not choice.chosen:
        return Recommendation(target=None, precision=None, bundle=None, reason="no bundle passed on this board",
                              not_recommended=choice.not_recommended)
    return choice


def _first_p50(row: BundleRun) -> float | None:
    """The p50 of the batch size a board profiled first (its rows keep that one)."""
    return None if row.first_latency is None else row.first_latency.p50_ms


def run_on_devices(rows: Sequence[BundleRun], out_dir: Path, inventory: str, names: Sequence[str],
                   tags: Sequence[str], evaluation: str | None, eval_count: int | None, batches: Sequence[int],
                   iterations: int, max_drop: float, accept_new: bool = False,
                   native_only: bool = False) -> DevicesReport:
    """Run every bundle that passed on the inventory's boards; the fleet report plus one recommendation per board.
    ``native_only`` (deploy --for native): the native runner is built and profiled on the boards too, and each
    board's recommendation is among the bundles a C++ app can link, by the native runner's figures."""
    from mait_deploy.host.remote.fleet import ProfileOptionsRemote, remote_profile

    devices = select(load_inventory(inventory), names, tags)
    bundles = [Path(row.bundle) for row in rows if row.ok and row.bundle]
    if not bundles:
        return DevicesReport(fleet=None, reason="no bundle passed on the host")
    options = ProfileOptionsRemote(batches=tuple(batches), iterations=iterations, native=native_only)
    fleet = remote_profile(devices, bundles, out_dir / DEVICES_FOLDER, eval_source=evaluation,
                           eval_count=eval_count, options=options, accept_new=accept_new, force=True)
    linkable = {b.name for b in fleet.bundles if b.cpp_app}
    recommended = {device.name: recommend_for_device([r for r in fleet.rows if r.where == device.name],
                                                     max_drop, native_only, linkable) for device in devices}
    return DevicesReport(fleet=fleet, recommended=recommended)


def markdown(devices: DevicesReport) -> str:
    if devices.fleet is None:
        return f"\n## On the devices\n\n{devices.reason or 'not run'}.\n"
    text = "\n## On the devices\n\n" + fleet_markdown(devices.fleet).split("\n", 2)[2]
    for device, choice in devices.recommended.items():
        if choice is None:
            text += f"- **{device}**: nothing ran.\n"
            continue
        text += f"- **{device}**: {choice.bundle or 'none'}: {choice.reason}.\n"
        for name, why in choice.not_recommended.items():
            text += f"  - not {name}: {why}.\n"
    return text
