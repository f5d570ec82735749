"""The deploy recommendation's timing: every bundle that passed its gate and runs here, timed side by side in one
process at batch 1 (device/profiling/side_by_side.time_bundles), so a ratio never compares runs made minutes apart
on a shared machine; the choice is the one rule in mait_deploy/recommendation.py."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mait_deploy.device.profiling.side_by_side import SideBySide, time_bundles
from mait_deploy.recommendation import Candidate, OwnLatency, Recommendation, recommend
from mait_deploy.results import BundleRun


def _timed(rows: Sequence[BundleRun]) -> list[BundleRun]:
    """The rows the recommendation weighs: built, verified and profiled here at batch 1."""
    return [row for row in rows if row.ok and row.bundle and row.p50_ms(1) is not None]


def _p50(row: BundleRun) -> float:
    p50 = row.p50_ms(1)
    assert p50 is not None  # _timed kept only rows with one
    return p50


def race(rows: Sequence[BundleRun], runners: Mapping[str, Any] | None = None, rounds: int = 12,
         block: int = 8) -> SideBySide | None:
    """Time every ok row's bundle at batch 1, side by side (with the row's runner where ``runners`` has one open,
    keyed by bundle path); None when fewer than two can run here."""
    candidates = _timed(rows)
    if len(candidates) < 2:
        return None
    opened = runners or {}
    return time_bundles({row.name: opened.get(str(row.bundle), row.bundle) for row in candidates}, rounds=rounds,
                        block=block)


def recommend_rows(rows: Sequence[BundleRun], timing: SideBySide | None,
                   native_only: bool = False) -> Recommendation | None:
    """The recommendation for this machine: from the race, or from each bundle's own profile when there was none.
    ``native_only``: among the bundles the C++ runner can run (deploy --for native), the others ruled out."""
    timed = _timed(rows)
    if not timed:
        return None
    speed = timing if timing is not None else OwnLatency(
        {row.name: _p50(row) for row in timed},
        how="by its own profile's p50 at batch 1 (fewer than two bundles run here: no side-by-side race)")
    candidates = [Candidate.of(row, ruled_out=None if row.cpp_app or not native_only else
                               "the C++ runner cannot run it (deploy --for native)") for row in timed]
    choice = recommend(candidates, speed, where="on this machine")
    return choice if choice.chosen else None
