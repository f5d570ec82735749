"""Compare the speed of several callables in one process, on the same machine state: the only timing a speed
ratio can rest on when the machine is shared or its clock moves.

Method: rounds of blocks. In each round every candidate runs one block of ``block`` consecutive calls; the first
call of each block is dropped (on 2 cores the previous runtime's worker threads are still spinning into it:
measured 2-4x the steady latency); the order of the candidates is reversed every round so that none always
follows the same neighbour. A round gives each candidate its median latency; each round gives a ratio against
the baseline, and the result is the median of those per-round ratios with their min and max, and a
distribution-free interval of that median (``median_interval``): the figure a decision between two candidates rests
on, since one that cannot separate them must say so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from mait_deploy.device.bundle import load_bundle
from mait_deploy.device.runner import Runner, RunnerOptions
from mait_deploy.errors import ValidationError, failure_line
from mait_deploy.typed_json import encode

if TYPE_CHECKING:  # pragma: no cover
    from mait_deploy.device.runner import Runner

# The confidence of the interval ratio_between gives the median per-round ratio.
RATIO_CONFIDENCE = 0.95


def median_interval(values: "np.ndarray | list[float]", confidence: float = RATIO_CONFIDENCE
                    ) -> tuple[float, float, float]:
    """A distribution-free interval of the median of ``values`` (independent rounds): the order statistics
    x(k) and x(n+1-k) with the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least
    ``confidence``. Returns (low, high, its actual coverage); with too few values for that confidence, the min and
    max and their (lower) coverage."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")
    k, coverage = 1, 1.0 - 2.0 * 0.5 ** n
    while k < (n + 1) // 2:
        below = sum(math.comb(n, i) for i in range(k + 1)) * 0.5 ** n  # P(B <= k) = P(B < k + 1)
        if 1.0 - 2.0 * below < confidence:
            break
        k, coverage = k + 1, 1.0 - 2.0 * below
    return float(ordered[k - 1]), float(ordered[n - k]), coverage


# What deploy's race, `compile --precision auto` and `compare` pass as ``settle_ms`` (see side_by_side).
BUNDLE_SETTLE_MS = 100.0


@dataclass
class SideBySide:
    baseline: str
    rounds: int
    block: int
    median_ms: dict[str, float]  # over all kept calls
    ratio: dict[str, dict[str, float]]  # name -> median/min/max of per-round (baseline time / name's time)
    samples: dict[str, int] = field(default_factory=dict)
    # Every kept call, in order: for plots and tests, never written to a report (metadata json False).
    timings_ms: dict[str, list[float]] = field(default_factory=dict, repr=False, metadata={"json": False})
    round_medians_ms: list[dict[str, float]] = field(default_factory=list)  # per round, per candidate
    batch: int = 1  # images per call (time_bundles); 0 when the calls are not model runs

    @property
    def how(self) -> str:
        """How these figures were measured, for a recommendation's reason."""
        return f"timed side by side at batch {self.batch} in one process ({self.rounds} rounds)"

    def has(self, name: str) -> bool:
        return name in self.median_ms

    def latency_of(self, name: str) -> float:
        return self.median_ms[name]

    def speedup(self, name: str) -> float:
        """How many times faster ``name`` is than the baseline (median of the per-round ratios)."""
        return self.ratio[name]["median"]

    def ratio_between(self, fast: str, slow: str) -> dict[str, float]:
        """How many times faster ``fast`` is than ``slow``: median/min/max over the rounds, and ``low``/``high``,
        the interval of that median at ``confidence`` (median_interval)."""
        values = np.array([r[slow] / r[fast] for r in self.round_medians_ms])
        low, high, coverage = median_interval(values)
        return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
                "low": low, "high": high, "confidence": round(coverage, 4)}

    def latency_interval(self, name: str) -> tuple[float, float]:
        """The interval (median_interval) of ``name``'s per-round median latency, ms."""
        low, high, _ = median_interval([r[name] for r in self.round_medians_ms])
        return low, high

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))


def side_by_side(candidates: Mapping[str, Callable[[], Any]], baseline: str | None = None, rounds: int = 12,
                 block: int = 8, warmup: int = 3, min_seconds: float = 0.0, settle_ms: float = 0.0) -> SideBySide:
    """Time ``candidates`` (name -> a call with no arguments) side by side; ratios are against ``baseline``
    (default: the first). ``min_seconds`` extends the run past ``rounds`` until that much time has passed.
    ``settle_ms``: each block also drops the calls that start within this long of its first call (sub-ms models
    need more than one call to settle after another runtime ran: measured here, 7 kept calls of 0.7 ms LiteRT and
    OpenVINO INT8 bundles read 1.3-1.6x what 128-call blocks read; after 50-100 ms of settling, 1.0x)."""
    names = list(candidates)
    if len(names) < 1:
        raise ValueError("nothing to time")
    baseline = baseline or names[0]
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not a candidate")
    if rounds < 1 or block < 2:
        raise ValueError("need at least one round and blocks of at least 2 calls (the first is dropped)")
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    kept: dict[str, list[float]] = {name: [] for name in names}
    per_round: list[dict[str, float]] = []
    deadline = time.perf_counter() + min_seconds
    done = 0
    while done < rounds or time.perf_counter() < deadline:
        order = names if done % 2 == 0 else names[::-1]
        medians = {}
        for name in order:
            run = candidates[name]
            first = time.perf_counter_ns()
            run()  # the first call of a block is never kept
            settled = first + int(settle_ms * 1e6)
            while time.perf_counter_ns() < settled:
                run()
            timings = []
            for _ in range(block - 1):
                started = time.perf_counter_ns()
                run()
                timings.append(time.perf_counter_ns() - started)
            steady = np.asarray(timings, dtype=np.float64) / 1e6
            kept[name].extend(steady.tolist())
            medians[name] = float(np.median(steady))
        per_round.append(medians)
        done += 1
    result = SideBySide(baseline=baseline, rounds=done, block=block,
                        median_ms={name: float(np.median(values)) for name, values in kept.items()},
                        ratio={}, samples={name: len(values) for name, values in kept.items()}, timings_ms=kept,
                        round_medians_ms=per_round, batch=0)
    result.ratio = {name: result.ratio_between(name, baseline) for name in names}
    return result


def time_bundles(bundles: Mapping[str, "str | Path | Runner"], baseline: str | None = None, batch: int = 1,
                 rounds: int = 12, block: int = 8, warmup: int = 3, threads: int | None = None,
                 environment: Mapping[str, str] | None = None) -> SideBySide:
    """Time bundles (name -> bundle folder, or a runner already open) side by side on one random batch each, with
    their device runners, dropping each block's first ``BUNDLE_SETTLE_MS``. The one timing loop deploy's race,
    `compile --precision auto` and `compare` use. With ``environment`` (a runtime's ISA cap, read when its library
    loads) the bundles are timed in a child process that has it (folders only)."""
    if environment:
        return _time_in_child(bundles, baseline, batch, rounds, block, warmup, threads, environment)

    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        calls = {}
        for name, bundle in bundles.items():
            if isinstance(bundle, Runner):
                runner = bundle.activate()
            else:
                runner = stack.enter_context(load_bundle(bundle, RunnerOptions(threads=threads)))
            inputs = rng.standard_normal((batch, *runner.sample_shape)).astype(np.float32)
            calls[name] = lambda runner=runner, inputs=inputs: runner.run(inputs)
        result = side_by_side(calls, baseline=baseline, rounds=rounds, block=block, warmup=warmup,
                              settle_ms=BUNDLE_SETTLE_MS)
    result.batch = batch
    return result


def _time_in_child(bundles: Mapping[str, Any], baseline: str | None, batch: int, rounds: int, block: int,
                   warmup: int, threads: int | None, environment: Mapping[str, str]) -> SideBySide:

    command = [sys.executable, "-m", __name__, "--rounds", str(rounds), "--block", str(block), "--batch", str(batch),
               "--warmup", str(warmup), "--baseline", baseline or next(iter(bundles)),
               *(["--threads", str(threads)] if threads else []),
               *(f"{name}={path}" for name, path in bundles.items())]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **environment})
    if done.returncode != 0:
        raise ValidationError(f"timing with {' '.join(f'{k}={v}' for k, v in environment.items())} failed: "
                              f"{failure_line(done.stderr)}")
    return SideBySide(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    """``python -m mait_deploy.device.profiling.side_by_side NAME=BUNDLE...``: time_bundles here, JSON on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--baseline")
    for flag, default in (("--rounds", 12), ("--block", 8), ("--batch", 1), ("--warmup", 3), ("--threads", None)):
        parser.add_argument(flag, type=int, default=default)
    args = parser.parse_args()
    bundles = dict(item.split("=", 1) for item in args.bundles)
    result = time_bundles(bundles, args.baseline, args.batch, args.rounds, args.block, args.warmup, args.threads)
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
