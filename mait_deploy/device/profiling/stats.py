"""Latency statistics from raw timings (numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


def _key(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-call latencies in milliseconds; ``throughput`` is images per second."""

    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    percentiles_ms: dict[str, float]
    throughput: float
    batch: int
    drift: float | None = None  # median of the last tenth / median of the first tenth (>1: slowing down)
    extra: dict[str, object] = field(default_factory=dict)

    def p(self, percentile: float) -> float:
        return self.percentiles_ms[_key(percentile)]

    @property
    def median_ms(self) -> float:
        return self.p(50)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def drift_ratio(samples_ms: np.ndarray) -> float | None:
    """Median of the last tenth over the median of the first tenth; None under 20 samples."""
    if len(samples_ms) < 20:
        return None
    tenth = len(samples_ms) // 10
    first = float(np.median(samples_ms[:tenth]))
    return float(np.median(samples_ms[-tenth:]) / first) if first > 0 else None


def latency_stats(samples_ns: Sequence[int] | np.ndarray, batch: int = 1,
                  percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> LatencyStats:
    """Summarise per-call timings (nanoseconds, in the order measured)."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if samples.size == 0:
        raise ValueError("no timings to summarise")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    bad = [p for p in percentiles if not 0 <= p <= 100]
    if bad:
        raise ValueError(f"percentiles must lie in [0, 100], got {bad}")
    values: Sequence[float] = np.percentile(samples, list(percentiles)).tolist() if percentiles else []
    mean = float(samples.mean())
    return LatencyStats(
        count=int(samples.size), mean_ms=mean, std_ms=float(samples.std()), min_ms=float(samples.min()),
        max_ms=float(samples.max()), percentiles_ms={_key(p): float(v) for p, v in zip(percentiles, values)},
        throughput=batch * 1000.0 / float(np.median(samples)), batch=batch, drift=drift_ratio(samples),
    )


@dataclass(frozen=True)
class Latency:
    """What every report shows for one batch size (deploy's rows, the fleet's rows, compare's cells): the median
    and p99 time of one runtime call and images per second. ``p99_ms`` is None where only a median was kept (a
    side-by-side race), both are None in throughput mode (calls overlap: only images per second mean anything)."""

    batch: int
    p50_ms: float | None
    p99_ms: float | None
    throughput: float  # images per second

    @classmethod
    def from_stats(cls, stats: LatencyStats) -> "Latency":
        """From a profile's statistics (a board's are read into a LatencyStats first: ProfileReport.from_dict)."""
        p99 = stats.percentiles_ms.get("p99")
        return cls(batch=stats.batch, p50_ms=round(stats.median_ms, 4), p99_ms=None if p99 is None else round(p99, 4),
                   throughput=round(stats.throughput, 2))

    @classmethod
    def from_median(cls, batch: int, median_ms: float) -> "Latency":
        return cls(batch=batch, p50_ms=round(median_ms, 4), p99_ms=None,
                   throughput=round(batch * 1000.0 / median_ms, 2))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
