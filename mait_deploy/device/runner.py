"""The runner interface (after Polygraphy's runners): a context manager that checks inputs against the bundle's
metadata, runs one backend, and records inference time. numpy only; each backend is one module.
"""

from __future__ import annotations

import abc
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mait_deploy import backends
from mait_deploy._runtime_logs import runtime_stderr_silenced
from mait_deploy.config import PreprocessConfig
from mait_deploy.device.load_probe import probe_load
from mait_deploy.device.manifest import Manifest
from mait_deploy.device.preprocess import image_files, preprocess
from mait_deploy.errors import BundleError, DataError, MaitDeployError, UnsupportedOption
from mait_deploy.options import MAX_THREADS, Option, validate

MAX_BATCH_DEFAULT = 1024  # larger requests are split into chunks of this size
MAX_INPUT_BYTES = 1 << 30  # a random or padded input batch the tools make: at most 1 GiB of float32


@dataclass
class Prediction:
    """What ``predict`` returns: one entry per image."""

    labels: list[str]
    indices: np.ndarray  # int64 [N]
    scores: np.ndarray  # float32 [N]: softmax probability of the top class
    logits: np.ndarray  # float32 [N, classes]
    inference_ms: float  # model time only, all chunks
    preprocess_ms: float
    class_names: list[str] = field(default_factory=list)  # the bundle's labels, by class index
    files: list[str] = field(default_factory=list)  # predict_files: the image each entry is for

    def to_list(self, top: int = 1) -> list[dict[str, Any]]:
        probabilities = softmax(self.logits)
        rows = []
        for i in range(len(self.indices)):
            order = np.argsort(-probabilities[i])[:top]
            rows.append({"label": self.labels[i], "index": int(self.indices[i]), "score": float(self.scores[i]),
                         "top": [{"label": self._name(j), "index": int(j), "probability": float(probabilities[i, j])}
                                 for j in order]})
        return rows

    def _name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)


_WHERE_LINE = re.compile(r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|\[ERROR\].*\.cpp:\d+\]?)$")


def _first_line(err: BaseException) -> str:
    """A runtime's message on one line (OpenVINO's and ExecuTorch's span several and open with the source line
    that raised it: the reason is the first line that is not such a location), bounded."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not _WHERE_LINE.match(line)]
    return ((reasons or lines or [type(err).__name__])[0])[:300]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass
class RunnerOptions:
    """Options every runner understands; backends add their own through ``extra`` (which a bundle's manifest
    fills too). What chooses code or trust is a device setting here, never in ``extra``: the native runner's
    library (else $MAIT_NATIVE_LIBRARY) and the key a bundle must be signed with (else $MAIT_TRUSTED_KEY)."""

    threads: int | None = None
    max_batch: int = MAX_BATCH_DEFAULT
    extra: dict[str, Any] = field(default_factory=dict)
    native_library: str | None = None
    trusted_key: str | None = None


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity, where the OS has one)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def runner_class(name: str) -> type[Runner]:
    """The device-side runner class of backend ``name`` (imports the backend's device module, not its runtime)."""
    cls: type[Runner] = backends.load(backends.get(name).runner)
    return cls


# The threads a runner takes when its options name none, in a process that shares the machine with other builds
# (a build worker, host/jobs/share.py); None: each runtime's own default (every core).
_THREAD_BUDGET: int | None = None


def set_thread_budget(threads: int | None) -> None:
    global _THREAD_BUDGET
    _THREAD_BUDGET = threads


class Runner(abc.ABC):
    """Runs one bundle's artifact. Subclasses implement ``_load``, ``_infer`` and ``_close`` only."""

    cache_dirs: tuple[str, ...] = ()  # folders the runtime adds inside a bundle on the device (not in the manifest)
    # The runtime options this runner takes (RunnerOptions.extra: the manifest's runtime.options, then the
    # caller's), checked once when it is made; read them from ``self.settings``.
    declared_options: tuple[Option, ...] = ()
    throughput_options: dict[str, Any] = {}  # runtime options `profile --mode throughput` sets (OpenVINO's hint)

    def __init__(self, bundle_dir: str | Path, manifest: Manifest, options: RunnerOptions | None = None) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.options = options or RunnerOptions()
        if self.options.threads is None and _THREAD_BUDGET:
            self.options = replace(self.options, threads=_THREAD_BUDGET)
        threads = self.options.threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or not 1 <= threads <= MAX_THREADS):
            raise UnsupportedOption(f"threads must be from 1 to {MAX_THREADS}, got {threads!r}")
        self.settings = validate(self.declared_options, self.options.extra, f"the {self.runtime_name} runner",
                                 flag="runtime option")
        self.preprocess_config = PreprocessConfig.from_dict(manifest.preprocess)
        spec = manifest.inputs[0]
        self.input_name = spec.name
        self.sample_shape = tuple(int(d) for d in spec.shape[1:])
        self.fixed_batch = manifest.batch if isinstance(manifest.batch, int) else None
        self.labels = manifest.labels
        self.num_classes = int(manifest.model["num_classes"])
        self.last_inference_ms = 0.0
        self._active = False

    @property
    def runtime_name(self) -> str:
        """The backend's registered name (written once, in the registry)."""
        return backends.name_of(type(self))

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def activate(self) -> "Runner":
        if not self._active:
            if self.load_may_crash:
                probe_load(self)
            try:
                with runtime_stderr_silenced():
                    self._load()
            except (MaitDeployError, ImportError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as err:  # the runtime's own error (a corrupt program whose hashes match): one line
                raise BundleError(f"{self.runtime_name} cannot load {self.bundle_dir / self.manifest.artifact.path}: "
                                  f"{_first_line(err)}") from err
            self._active = True
        return self

    def close(self) -> None:
        if self._active:
            self._close()
            self._active = False

    @property
    def load_may_crash(self) -> bool:
        """True where this runtime can kill the process on a corrupt program instead of raising (no verifier of
        its own): the program is then loaded in a child process first (device/load_probe.py)."""
        return False

    @property
    def is_active(self) -> bool:
        return self._active

    # -- backend hooks ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> None:
        """Create the backend session/interpreter/engine."""

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 [B, C, H, W] (B = the fixed batch when the artifact has one) -> float32 logits [B, classes], in
        a new array (run() hands it to the caller, so never a view of a buffer the backend reuses)."""

    def _close(self) -> None:
        """Release the backend (default: drop references)."""

    def runtime_info(self) -> dict[str, Any]:
        """What actually runs (versions, device, precision); backends extend it."""
        return {"runtime": self.runtime_name}

    @property
    def runtime_latency_ms(self) -> float | None:
        """The runtime's own timing of the last inference where it keeps one (None otherwise)."""
        return None

    # Why this runtime has no per-layer profile here, and where one is (backends with layer_times override it).
    layer_profiler_missing: str = "its runtime has no per-operation profiler in mait-deploy"

    def layer_times(self, inputs: np.ndarray, iterations: int, warmup: int) -> list[Any]:
        """Per-operation times of ``iterations`` calls on ``inputs`` (after ``warmup``), from the runtime's own
        profiler, in execution order: a list of device.profiling.layers.LayerTime, each averaged per call."""
        raise UnsupportedOption(f"per-layer profiles are not available for {self.runtime_name} bundles: "
                                f"{self.layer_profiler_missing}")

    def throughput_run(self, batch: np.ndarray, iterations: int, requests: int | None) -> tuple[int, int]:
        """Keep ``requests`` inferences in flight with the runtime's own async machinery until ``iterations``
        have completed; returns (wall time in ns, requests used). Backends without one raise UnsupportedOption."""
        raise UnsupportedOption(f"throughput mode is not available for the {self.runtime_name} runtime")

    # -- public API ------------------------------------------------------------------------------------------
    def check_input(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise DataError(f"model input must be a numpy array, got {type(batch).__name__}")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.sample_shape:
            raise DataError(f"model input must have shape [N, {', '.join(map(str, self.sample_shape))}], "
                            f"got {list(batch.shape)}")
        if batch.shape[0] == 0:
            raise DataError("empty batch: no images given")
        if batch.dtype != np.float32:
            raise DataError(f"model input must be float32, got {batch.dtype} (use predict() for raw images)")
        if not np.isfinite(batch).all():
            raise DataError("model input contains NaN or Inf")
        return np.ascontiguousarray(batch)

    @property
    def batch_limit(self) -> int:
        """The most samples one runtime call takes: the artifact's fixed batch, else the backend's own limit
        (e.g. a TensorRT optimization profile's max) capped by ``RunnerOptions.max_batch``."""
        if self.fixed_batch:
            return self.fixed_batch
        backend = self._backend_batch_limit()
        return min(self.options.max_batch, backend) if backend else self.options.max_batch

    def threads_or_all_cores(self) -> int:
        """The asked-for thread count, else every core this process may use (for runtimes whose own default is
        fewer: LiteRT's interpreter takes one thread unless told)."""
        if self.options.threads:
            return int(self.options.threads)
        return len(usable_cores())

    def random_inputs(self, batch: int, seed: int = 0) -> np.ndarray:
        """A random float32 batch of this model's inputs (what profiles time), its size checked before it is made:
        a large --batch is one line, not a MemoryError."""
        per_sample = 4 * int(np.prod(self.sample_shape))
        if batch < 1 or batch * per_sample > MAX_INPUT_BYTES:
            raise UnsupportedOption(f"batch {batch} of {list(self.sample_shape)} inputs needs "
                                    f"{batch * per_sample / 2**20:.0f} MiB; the limit is {MAX_INPUT_BYTES >> 20} MiB "
                                    f"(at most {MAX_INPUT_BYTES // per_sample} here)")
        return np.random.default_rng(seed).standard_normal((batch, *self.sample_shape)).astype(np.float32)

    def _backend_batch_limit(self) -> int | None:
        """The backend's own limit on one call's batch (None: none beyond memory)."""
        return None

    def timed_call(self, batch: np.ndarray) -> tuple[np.ndarray, int]:
        """One runtime call on a batch the artifact takes as it is, and its duration in ns: the profiler's unit.
        No chunking and no padding: a fixed-batch artifact takes exactly its batch, any other at most
        ``batch_limit``; anything else is a one-line error."""
        count = len(batch)
        if self.fixed_batch and count != self.fixed_batch:
            raise UnsupportedOption(f"this bundle has a fixed batch of {self.fixed_batch}; got {count}")
        if count > self.batch_limit:
            raise UnsupportedOption(f"batch {count} is above this bundle's limit of {self.batch_limit} per call")
        if not self._active:
            self.activate()
        started = time.perf_counter_ns()
        try:
            logits = self._infer(batch)
        except (MaitDeployError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as err:  # a runtime that loaded a program and fails to run it
            raise BundleError(f"{self.runtime_name} failed to run {self.bundle_dir / self.manifest.artifact.path}: "
                              f"{_first_line(err)}") from err
        return logits, time.perf_counter_ns() - started

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a preprocessed float32 [N, C, H, W] batch of any size (chunked/padded as the artifact needs)."""
        if not self._active:
            self.activate()
        batch = self.check_input(batch)
        chunk = self.batch_limit
        outputs, elapsed = [], 0
        for start in range(0, len(batch), chunk):
            part = batch[start:start + chunk]
            count = len(part)
            if self.fixed_batch and count < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - count, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            logits, took = self.timed_call(part)
            if logits.ndim != 2 or logits.shape[1] != self.num_classes:
                raise BundleError(f"{self.bundle_dir}: the artifact gives outputs of shape {list(logits.shape)}; "
                                  f"its manifest promises [N, {self.num_classes}]")
            elapsed += took
            outputs.append(np.asarray(logits, dtype=np.float32)[:count])
        self.last_inference_ms = elapsed / 1e6
        # One chunk (the usual case) needs no copy: _infer returns a new array.
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def preprocess(self, images: Any) -> np.ndarray:
        return preprocess(images, self.preprocess_config)

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], chunk: int = 256) -> Prediction:
        """``predict`` on image files and folders of them (``image_files``), ``chunk`` images decoded at a time so
        a large folder never sits in memory at once; the timings are the chunks' sums."""
        files = image_files(paths)
        parts = [self.predict([str(p) for p in files[i:i + chunk]]) for i in range(0, len(files), chunk)]
        return Prediction(labels=[label for part in parts for label in part.labels],
                          indices=np.concatenate([part.indices for part in parts]),
                          scores=np.concatenate([part.scores for part in parts]),
                          logits=np.concatenate([part.logits for part in parts]),
                          inference_ms=sum(part.inference_ms for part in parts),
                          preprocess_ms=sum(part.preprocess_ms for part in parts), class_names=list(self.labels),
                          files=[str(p) for p in files])

    def predict(self, images: Any) -> Prediction:
        """Labels, top-class scores and raw logits for file paths, PIL images or uint8/float arrays."""
        started = time.perf_counter_ns()
        batch = self.preprocess(images)
        preprocess_ms = (time.perf_counter_ns() - started) / 1e6
        logits = self.run(batch)
        indices = logits.argmax(axis=-1)
        scores = softmax(logits)[np.arange(len(indices)), indices].astype(np.float32)
        return Prediction(labels=[self.labels[i] for i in indices], indices=indices, scores=scores, logits=logits,
                          inference_ms=self.last_inference_ms, preprocess_ms=preprocess_ms,
                          class_names=list(self.labels))
