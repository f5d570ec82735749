"""profile(): latency percentiles, throughput, memory and device state of a bundle on this device (no torch).

Model latency is timed with perf_counter_ns around the runtime call only (the runner's ``timed_call``); the end-to-end
figure times predict() on raw images (preprocessing + inference + softmax), with preprocessing also reported
alone. Warm-up is measured and reported apart from the measurement.
"""

from __future__ import annotations

import datetime as _dt
import resource
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

from mait_deploy.device.bundle import load_bundle, load_golden
from mait_deploy.device.logits import GateResult
from mait_deploy.device.manifest import read_manifest
from mait_deploy.device.profiling.state import device_state
from mait_deploy.device.profiling.stats import DEFAULT_PERCENTILES, LatencyStats, latency_stats
from mait_deploy.device.runner import Runner, RunnerOptions, runner_class
from mait_deploy.errors import MaitDeployError, UnsupportedOption
from mait_deploy.typed_json import decode, encode

REPORT_SCHEMA_VERSION = 1
Item = TypeVar("Item")
MODES = ("latency", "throughput")


@dataclass(frozen=True)
class ProfileOptions:
    batches: tuple[int, ...] = (1,)
    warmup: int = 10
    iterations: int | None = 100
    duration_s: float | None = None  # instead of iterations: measure for this long
    threads: int | None = None
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    mode: str = "latency"
    requests: int | None = None  # throughput mode: inferences in flight (default: the runtime's choice)
    end_to_end: bool = True
    runtime_options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise UnsupportedOption(f"batch sizes must be positive integers, got {list(self.batches)}")
        if self.warmup < 0:
            raise UnsupportedOption(f"warm-up must be >= 0, got {self.warmup}")
        if (self.iterations is None) == (self.duration_s is None):
            raise UnsupportedOption("give either a number of iterations or a duration, not both")
        if self.iterations is not None and self.iterations < 1:
            raise UnsupportedOption(f"iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UnsupportedOption(f"duration must be > 0 s, got {self.duration_s}")
        bad = [p for p in self.percentiles if not 0 <= p <= 100]
        if bad or not self.percentiles:
            raise UnsupportedOption(f"percentiles must lie in [0, 100], got {list(self.percentiles)}")
        if self.mode not in MODES:
            raise UnsupportedOption(f"mode must be latency or throughput, got {self.mode!r}")
        if self.threads is not None and self.threads < 1:
            raise UnsupportedOption(f"threads must be >= 1, got {self.threads}")
        if self.requests is not None and self.requests < 1:
            raise UnsupportedOption(f"requests must be >= 1, got {self.requests}")


@dataclass
class Warmup:
    count: int
    total_ms: float
    first_ms: float | None


@dataclass
class ThroughputFigures:
    """Throughput mode: calls overlap, so only images per second mean anything."""

    images_per_s: float
    inferences: int
    requests_in_flight: int
    wall_s: float


@dataclass
class BatchResult:
    batch: int
    mode: str
    warmup: Warmup | None = None
    model: LatencyStats | None = None  # the runtime call
    runtime_reported: LatencyStats | None = None  # the runtime's own timing of it (OpenVINO)
    end_to_end: LatencyStats | None = None  # predict() on raw images
    preprocess: LatencyStats | None = None
    throughput: ThroughputFigures | None = None  # throughput mode
    samples_ms: list[float] = field(default_factory=list)  # per-iteration model times, for plots
    error: str | None = None


@dataclass
class ProfiledBundle:
    path: str
    target: str
    precision: str
    model: str | None
    artifact_bytes: int
    batch: int | str | None


@dataclass
class MemoryFigures:
    """Resident memory of the profiling process, MB (and the runtime's load time)."""

    rss_start_mb: float | None = None
    load_ms: float | None = None
    rss_after_load_mb: float | None = None
    rss_end_mb: float | None = None
    peak_rss_mb: float | None = None
    load_increase_mb: float | None = None  # what loading the bundle added
    run_increase_mb: float | None = None  # what running it added after that
    jetson_shared_ram_used_mb: float | None = None  # a Jetson's RAM is the GPU's too (tegrastats)

    @property
    def added_mb(self) -> float | None:
        """What loading and running the bundle added to the process."""
        if self.load_increase_mb is None or self.run_increase_mb is None:
            return None
        return round(self.load_increase_mb + self.run_increase_mb, 1)


@dataclass
class DeviceSnapshots:
    """The device's state (state.device_state: CPU, memory, thermal, board specifics) around a profile."""

    before: dict[str, object]
    after: dict[str, object]


@dataclass
class ProfileReport:
    schema_version: int
    created: str
    bundle: ProfiledBundle
    runtime: dict[str, object]  # what the runtime says of itself (Runner.runtime_info)
    options: ProfileOptions
    results: list[BatchResult]
    memory: MemoryFigures
    device: DeviceSnapshots
    accuracy: GateResult | None  # the bundle's own gate, from its manifest
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(encode(self))

    @classmethod
    def from_dict(cls, data: object) -> "ProfileReport":
        """Read strictly (a report a board sent, or a file): every field of its type, none unknown."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != REPORT_SCHEMA_VERSION:
            raise MaitDeployError(f"profile report schema {version!r} is not supported (this version reads "
                                  f"{REPORT_SCHEMA_VERSION})")
        return decode(cls, data, "profile report")


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The highest resident set size of this process since it started (MB). Linux: VmHWM, the high-water mark of
    this program's own memory. Not ``ru_maxrss``: Linux carries it across exec from the parent's at fork, so a
    process spawned by one holding 800 MB reports at least 800 MB whatever it uses itself (a build worker did)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, IndexError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _timed_loop(timed_call: Callable[[], int], iterations: int | None, duration_s: float | None,
                after: Callable[[], object] | None = None) -> list[int]:
    """Per-call times in ns (each ``timed_call`` returns its own), for ``iterations`` calls or until
    ``duration_s`` has passed; ``after`` runs after each call, outside the timed window."""
    samples: list[int] = []
    deadline = None if duration_s is None else time.perf_counter() + duration_s
    while True:
        samples.append(timed_call())
        if after is not None:
            after()
        if deadline is None and len(samples) >= (iterations or 1):
            return samples
        if deadline is not None and time.perf_counter() >= deadline:
            return samples


def _raw_images(runner: Runner, count: int) -> np.ndarray | None:
    """Real images for the end-to-end figure: the bundle's golden images, repeated up to ``count``."""

    golden = load_golden(runner.bundle_dir, runner.manifest)
    if golden.kind != "images":
        return None
    return golden.samples[np.arange(count) % len(golden.samples)]


def _profile_batch(runner: Runner, batch: int, options: ProfileOptions,
                   progress: Callable[[str], None]) -> BatchResult:
    if runner.fixed_batch and batch != runner.fixed_batch:
        raise UnsupportedOption(f"this bundle has a fixed batch of {runner.fixed_batch}; profile --batch "
                                f"{runner.fixed_batch}")
    if batch > runner.batch_limit:
        raise UnsupportedOption(f"batch {batch} is above this bundle's limit of {runner.batch_limit} per call; "
                                f"profile --batch {runner.batch_limit} or less")
    inputs = runner.random_inputs(batch, seed=batch)
    warm = []
    for _ in range(options.warmup):
        warm.append(runner.timed_call(inputs)[1])
    warmup = Warmup(count=len(warm), total_ms=sum(warm) / 1e6, first_ms=warm[0] / 1e6 if warm else None)
    result = BatchResult(batch=batch, mode=options.mode, warmup=warmup)
    if options.mode == "throughput":
        progress(f"batch {batch}: throughput")
        iterations = options.iterations or max(1, int((options.duration_s or 0.0) * 1000 / max(1e-3, (
            np.median(warm) / 1e6 if warm else 10.0))))
        elapsed, requests = runner.throughput_run(inputs, iterations, options.requests)
        result.throughput = ThroughputFigures(images_per_s=iterations * batch * 1e9 / elapsed, inferences=iterations,
                                              requests_in_flight=requests, wall_s=elapsed / 1e9)
        return result
    progress(f"batch {batch}: model latency")
    reported: list[float] = []
    keeps_own_time = runner.runtime_latency_ms is not None  # warm-up has run, so a runtime that keeps one has it
    samples = _timed_loop(lambda: runner.timed_call(inputs)[1], options.iterations, options.duration_s,
                          after=(lambda: reported.append(runner.runtime_latency_ms or 0.0)) if keeps_own_time else None)
    stats = latency_stats(samples, batch=batch, percentiles=options.percentiles)
    result.model = stats
    if reported:
        result.runtime_reported = latency_stats(np.asarray(reported) * 1e6, batch=batch,
                                                percentiles=options.percentiles)
    result.samples_ms = [s / 1e6 for s in samples]
    if options.end_to_end:
        images = _raw_images(runner, batch)
        if images is not None:
            progress(f"batch {batch}: end to end")
            pre: list[float] = []

            def call() -> int:
                started = time.perf_counter_ns()
                pre.append(runner.predict(images).preprocess_ms)
                return time.perf_counter_ns() - started

            # Half the model iterations (or duration): enough for stable end-to-end percentiles.
            e2e = _timed_loop(call, max(1, (options.iterations or 2) // 2),
                              None if options.duration_s is None else options.duration_s / 2)
            result.end_to_end = latency_stats(e2e, batch=batch, percentiles=options.percentiles)
            result.preprocess = latency_stats(np.asarray(pre) * 1e6, batch=batch, percentiles=options.percentiles)
    return result


def profile(bundle_or_runner: str | Path | Runner, options: ProfileOptions | None = None,
            progress: Callable[[str], None] | None = None) -> ProfileReport:
    """Profile one bundle. A failure part-way is recorded in the report (``error``) instead of losing the
    results measured so far; the caller decides whether to exit non-zero."""

    options = options or ProfileOptions()
    step = progress or (lambda message: None)
    device_before = device_state()
    rss_start = rss_mb()
    opened_here = not isinstance(bundle_or_runner, Runner)  # a caller's runner stays open for its next use
    if isinstance(bundle_or_runner, Runner):
        runner = bundle_or_runner
    else:
        extra = dict(options.runtime_options)
        if options.mode == "throughput":  # the runtime's own setting for requests in flight, where it has one

            extra = {**runner_class(read_manifest(bundle_or_runner).runtime.name).throughput_options, **extra}
        runner = load_bundle(bundle_or_runner, RunnerOptions(threads=options.threads, extra=extra))
    manifest = runner.manifest
    results: list[BatchResult] = []
    error = None
    memory = MemoryFigures(rss_start_mb=rss_start)
    try:
        step("loading the runtime")
        started = time.perf_counter_ns()
        runner.activate()
        memory.load_ms = (time.perf_counter_ns() - started) / 1e6
        memory.rss_after_load_mb = rss_mb()
        for batch in options.batches:
            try:
                results.append(_profile_batch(runner, batch, options, step))
            except Exception as err:  # keep what was measured; record why this batch failed
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                results.append(BatchResult(batch=batch, mode=options.mode, error=message))
                error = error or f"batch {batch}: {message}"
        runtime = runner.runtime_info()
    except Exception as err:
        error = str(err).splitlines()[0] if str(err) else traceback.format_exc(limit=1)
        runtime = {"runtime": manifest.runtime.name}
    finally:
        memory.rss_end_mb = rss_mb()
        memory.peak_rss_mb = peak_rss_mb()
        if memory.rss_after_load_mb is not None:
            memory.load_increase_mb = memory.rss_after_load_mb - rss_start
            memory.run_increase_mb = memory.rss_end_mb - memory.rss_after_load_mb
        if opened_here:
            runner.close()
    jetson = device_before.get("jetson")
    if isinstance(jetson, dict) and isinstance(jetson.get("tegrastats"), dict):
        memory.jetson_shared_ram_used_mb = jetson["tegrastats"].get("ram_used_mb")
    size = manifest.size_bytes
    return ProfileReport(
        schema_version=REPORT_SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        bundle=ProfiledBundle(path=str(runner.bundle_dir), target=manifest.target, precision=manifest.precision,
                              model=manifest.model.get("name"), artifact_bytes=size, batch=manifest.batch),
        runtime=runtime, options=options, results=results, memory=memory,
        device=DeviceSnapshots(before=device_before, after=device_state()),
        accuracy=manifest.accuracy, error=error,
    )


def parse_list(text: str, kind: Callable[[str], Item], what: str) -> tuple[Item, ...]:
    """'1,8,32' -> (1, 8, 32) with a one-line error on bad input."""
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise UnsupportedOption(f"bad {what} list {text!r}: {err}") from err
    if not values:
        raise UnsupportedOption(f"empty {what} list")
    return values


def profile_many(bundles: Sequence[str | Path], options: ProfileOptions,
                 progress: Callable[[str], None] | None = None) -> list[ProfileReport]:
    """One report per bundle; a bundle that cannot even be opened (missing, tampered) gets a report holding the
    error, so the others' results are still written."""
    reports = []
    for bundle in bundles:
        try:
            reports.append(profile(bundle, options, progress))
        except MaitDeployError as err:
            reports.append(_unopened_report(bundle, options, str(err)))
    return reports


def _unopened_report(bundle: str | Path, options: ProfileOptions, error: str) -> ProfileReport:
    state = device_state()
    return ProfileReport(
        schema_version=REPORT_SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        bundle=ProfiledBundle(path=str(bundle), target="?", precision="?", model=None, artifact_bytes=0, batch=None),
        runtime={}, options=options, results=[], memory=MemoryFigures(),
        device=DeviceSnapshots(before=state, after=state), accuracy=None, error=error,
    )
