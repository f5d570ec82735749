"""LiteRT (TFLite) runner for Raspberry Pi and Arm boards: ai-edge-litert's interpreter, tflite-runtime as a fallback.

INT8 models may take and return int8 tensors: the runner quantizes inputs and dequantizes outputs with the
scale and zero point the interpreter reports, so predict() takes and returns the same things at every precision.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mait_deploy._runtime_logs import runtime_stderr_silenced
from mait_deploy.backends.litert.interpreter import interpreter_module
from mait_deploy.backends.litert.op_profile import op_times
from mait_deploy.device.profiling.layers import LayerTime
from mait_deploy.device.runner import Runner
from mait_deploy.options import Option


def make_interpreter(model_path: str | None, threads: int | None, xnnpack: bool,
                     content: bytes | None = None) -> tuple[Any, str]:
    """An allocated interpreter of the file ``model_path`` (or of the model bytes ``content``)."""
    module, package = interpreter_module()
    kwargs: dict[str, Any] = {"model_path": model_path, "model_content": content, "num_threads": threads or None}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with runtime_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate" from C++, on every load
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    return interpreter, package


class _Io:
    """Input/output indices and (de)quantization of one interpreter."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.input = interpreter.get_input_details()[0]
        self.output = interpreter.get_output_details()[0]

    def set_input(self, batch: np.ndarray) -> None:
        tensor = batch
        if self.input["dtype"] in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            tensor = np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], tensor)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.set_input(batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32, copy=False)


class LiteRtRunner(Runner):
    declared_options = (Option("xnnpack", bool, True, "run on the XNNPACK delegate (else the reference kernels)"),)

    def _xnnpack(self) -> bool:
        return self.settings["xnnpack"]

    def _load(self) -> None:
        path = str(self.bundle_dir / self.manifest.artifact.path)
        # The interpreter's own default is one thread (measured: 1.22 ms vs 0.87 ms with 2 threads for the demo
        # model on this 2-core machine): every core this process may use, unless told.
        interpreter, self._package = make_interpreter(path, self.threads_or_all_cores(), self._xnnpack())
        self._io = _Io(interpreter)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._io.run(batch)

    def _close(self) -> None:
        self._io = None

    def layer_times(self, inputs: np.ndarray, iterations: int, warmup: int) -> list[Any]:
        """Each operation timed on its own (ai-edge-litert's Python interpreter has no op profiler; see
        op_profile.py for how, and what isolation leaves out)."""

        path = str(self.bundle_dir / self.manifest.artifact.path)
        threads, xnnpack = self.threads_or_all_cores(), self._xnnpack()
        rows = op_times(path, inputs, iterations, warmup,
                        make=lambda content: make_interpreter(None, threads, xnnpack, content=content)[0],
                        feed=lambda interpreter, batch: _Io(interpreter).set_input(batch))
        kernel = "XNNPACK, each op alone" if xnnpack else "reference kernels, each op alone"
        return [LayerTime(row["name"], row["op_type"], row["ms"], kernel=kernel, precision=row["precision"],
                          is_norm=row["is_norm"]) for row in rows]

    def throughput_run(self, batch: np.ndarray, iterations: int, requests: int | None) -> tuple[int, int]:
        """LiteRT has no async API and an interpreter is not thread-safe: one interpreter per worker thread."""
        requests = requests or 2
        path = str(self.bundle_dir / self.manifest.artifact.path)
        workers = [_Io(make_interpreter(path, 1, self._xnnpack())[0]) for _ in range(requests)]
        counter = iter(range(iterations))
        lock = threading.Lock()

        def work(io: _Io) -> None:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                io.run(batch)

        started = time.perf_counter_ns()
        with ThreadPoolExecutor(max_workers=requests) as pool:
            list(pool.map(work, workers))
        return time.perf_counter_ns() - started, requests

    def runtime_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.runtime_name, "xnnpack": self._xnnpack(),
                                "threads": self.threads_or_all_cores()}
        if self.is_active:
            from importlib.metadata import PackageNotFoundError, version

            try:
                info["version"] = f"{self._package} {version(self._package)}"
            except PackageNotFoundError:
                info["version"] = self._package
            info["input_dtype"] = np.dtype(self._io.input["dtype"]).name
        return info
