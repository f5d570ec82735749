"""Compare the speed of several callables in one process, on the same machine state: the only timing a speed
ratio can rest on when the machine is shared or its clock moves.

Method: rounds of blocks. In each round every candidate runs one block of ``block`` consecutive calls; the first
call of each block is dropped (on 2 cores the previous runtime's worker threads are still spinning into it:
measured 2-4x the steady latency); the order of the candidates is reversed every round so that none always
follows the same neighbour. A round gives each candidate its median latency; each round gives a ratio against
the baseline, and the result is the median of those per-round ratios with their min and max (their spread says
how far the ratio can be trusted).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

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
    timings_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)  # every kept call, in order
    round_medians_ms: list[dict[str, float]] = field(default_factory=list)  # per round, per candidate

    def speedup(self, name: str) -> float:
        """How many times faster ``name`` is than the baseline (median of the per-round ratios)."""
        return self.ratio[name]["median"]

    def ratio_between(self, fast: str, slow: str) -> dict[str, float]:
        """How many times faster ``fast`` is than ``slow``: median/min/max over the rounds."""
        values = np.array([r[slow] / r[fast] for r in self.round_medians_ms])
        return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max())}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["timings_ms"]
        return data


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
                        round_medians_ms=per_round)
    result.ratio = {name: result.ratio_between(name, baseline) for name in names}
    return result
