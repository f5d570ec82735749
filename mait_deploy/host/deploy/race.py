"""The deploy recommendation's timing: every bundle that passed its gate and runs here, timed side by side in one
process at batch 1 (mait_deploy.device.profiling.side_by_side), so a ratio never compares runs made minutes
apart on a shared machine. A reduced precision is eligible only where it beats its own target's FP32 in that
race: INT8 that is not faster is never recommended, and the report says by how much it lost."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mait_deploy.device.profiling.side_by_side import BUNDLE_SETTLE_MS, SideBySide, side_by_side
from mait_deploy.errors import ValidationError, failure_line
from mait_deploy.host.deploy.report import Row


def _name(row: Row) -> str:
    return f"{row.target} {row.precision}"


def race_bundles(bundles: Mapping[str, str | Path], baseline: str | None = None, rounds: int = 12,
                 block: int = 8, environment: Mapping[str, str] | None = None) -> SideBySide:
    """Time bundles (name -> folder) at batch 1 side by side in this process, each with its device runner; with
    ``environment`` (a runtime's ISA cap, read when the library loads), in a child process that has it."""
    if environment:
        return _race_in_child(bundles, baseline, rounds, block, environment)
    from mait_deploy.device.bundle import load_bundle

    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        calls = {}
        for name, folder in bundles.items():
            runner = stack.enter_context(load_bundle(folder))
            batch = rng.standard_normal((1, *runner.sample_shape)).astype(np.float32)
            calls[name] = lambda runner=runner, batch=batch: runner.run(batch)
        return side_by_side(calls, baseline=baseline, rounds=rounds, block=block, settle_ms=BUNDLE_SETTLE_MS)


def _race_in_child(bundles: Mapping[str, str | Path], baseline: str | None, rounds: int, block: int,
                   environment: Mapping[str, str]) -> SideBySide:
    command = [sys.executable, "-m", "mait_deploy.host.deploy.race", "--rounds", str(rounds), "--block", str(block),
               "--baseline", baseline or next(iter(bundles)), *(f"{name}={path}" for name, path in bundles.items())]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **environment})
    if done.returncode != 0:
        last = failure_line(done.stderr)
        raise ValidationError(f"timing with {' '.join(f'{k}={v}' for k, v in environment.items())} failed: {last}")
    return SideBySide(**json.loads(done.stdout.strip().splitlines()[-1]))


def race(rows: Sequence[Row], rounds: int = 12, block: int = 8) -> SideBySide | None:
    """Time every ok row's bundle at batch 1, side by side; None when fewer than two can run here."""
    candidates = [row for row in rows if row.status == "ok" and "batch_1" in row.latency]
    if len(candidates) < 2:
        return None
    return race_bundles({_name(row): row.bundle for row in candidates}, rounds=rounds, block=block)


def faster_than_fp32(timing: SideBySide, name: str, fp32: str) -> tuple[bool, str]:
    """Whether ``name`` beat ``fp32`` in the race (median of the per-round ratios above 1), and the figures."""
    ratio = timing.ratio_between(name, fp32)
    return ratio["median"] > 1.0, f"{ratio['median']:.2f}x {fp32} (rounds {ratio['min']:.2f}-{ratio['max']:.2f}x)"


def recommend_from_race(rows: Sequence[Row], timing: SideBySide) -> dict[str, Any] | None:
    """The fastest eligible bundle in the race, with the reason and what was ruled out."""
    by_name = {_name(row): row for row in rows if _name(row) in timing.median_ms}
    excluded = {}
    for name, row in by_name.items():
        fp32 = f"{row.target} fp32"
        if row.precision != "fp32" and fp32 in by_name:
            faster, figures = faster_than_fp32(timing, name, fp32)
            if not faster:
                excluded[name] = f"not faster than {fp32} side by side: {figures}"
    eligible = [name for name in by_name if name not in excluded]
    if not eligible:
        return None
    best_name = min(eligible, key=lambda name: timing.median_ms[name])
    best = by_name[best_name]
    reason = (f"fastest at batch 1 timed side by side with {len(by_name) - 1} other bundle(s) in one process "
              f"({timing.median_ms[best_name]:.2f} ms median, {timing.rounds} rounds)")
    fp32 = f"{best.target} fp32"
    if best.precision != "fp32" and fp32 in by_name:
        reason += f"; {faster_than_fp32(timing, best_name, fp32)[1]}"
    runner_up = min((n for n in eligible if n != best_name), key=lambda n: timing.median_ms[n], default=None)
    if runner_up is not None:
        ratio = timing.ratio_between(best_name, runner_up)
        reason += f"; {ratio['median']:.2f}x the next, {runner_up}"
    if best.drop_points is not None:
        reason += f"; top-1 drop {best.drop_points:+.2f} points vs FP32"
    return {"target": best.target, "precision": best.precision, "bundle": best.bundle, "reason": reason,
            "not_recommended": excluded}


def main() -> None:
    """``python -m mait_deploy.host.deploy.race NAME=BUNDLE...``: race_bundles in this process, JSON on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--baseline")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block", type=int, default=8)
    args = parser.parse_args()
    bundles = dict(item.split("=", 1) for item in args.bundles)
    print(json.dumps(race_bundles(bundles, args.baseline, args.rounds, args.block).to_dict()))


if __name__ == "__main__":
    main()
