"""ExecuTorch runner: the .pte through ExecuTorch's Python runtime where it is installed (the host: it links
libtorch), else through the native runner's library (mait_deploy/native, built against the wheel's C++ runtime):
a device needs numpy and that library, never torch.

Both load the same program into the same C++ runtime and its XNNPACK delegate; the one in use is in
``runtime_info`` (``via``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mait_deploy.device.runner import Runner
from mait_deploy.errors import BundleError, MissingDependency
from mait_deploy.options import Option


def _threads(asked: int | None) -> int:
    if asked:
        return int(asked)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _PythonRuntime:
    """executorch.runtime (pybind over the C++ runtime)."""

    via = "executorch.runtime"

    def __init__(self, path: str, threads: int) -> None:
        import torch  # executorch.runtime's tensors are torch tensors
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        self._torch = torch
        # The XNNPACK threadpool is process-wide: the last runner made sets it (as the native runner does).
        portable_lib._unsafe_reset_threadpool(threads)
        runtime = Runtime.get()
        if not runtime.backend_registry.is_available("XnnpackBackend"):
            raise BundleError("this ExecuTorch runtime has no XNNPACK backend")
        try:
            self._method = runtime.load_program(path).load_method("forward")
        except Exception as err:
            raise BundleError(f"ExecuTorch cannot load {path}: {str(err).splitlines()[0] if str(err) else err!r}") \
                from err
        meta = self._method.metadata
        self.input_shape = tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
        import executorch

        self.version = getattr(executorch, "__version__", "")

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._method.execute([self._torch.from_numpy(batch)])[0]
        return out.numpy().astype(np.float32, copy=True)


class ExecuTorchRunner(Runner):
    declared_options = (
        Option("via", str, "auto", "auto: ExecuTorch's Python runtime where installed, else the native library; "
                                   "python or native to insist", choices=("auto", "python", "native")),
    )
    layer_profiler_missing = "ExecuTorch's op profiler (ETDump) needs a runtime built with event tracing"

    def _runtime(self) -> Any:
        path = str(self.bundle_dir / self.manifest.artifact.path)
        threads = _threads(self.options.threads)
        via = self.settings["via"]
        if via in ("auto", "python"):
            try:
                return _PythonRuntime(path, threads)
            except ImportError as err:
                if via == "python":
                    raise MissingDependency("executorch", extra="executorch",
                                            detail="its Python runtime also needs torch") from err
        from mait_deploy.backends.executorch.native_lib import NativeRuntime

        return NativeRuntime(self.bundle_dir, threads)

    def _load(self) -> None:
        self._rt = self._runtime()
        expected = (self.fixed_batch, *self.sample_shape)
        if tuple(self._rt.input_shape) != expected:
            raise BundleError(f"the program's input is {list(self._rt.input_shape)}; the manifest says "
                              f"{list(expected)}")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._rt.run(batch)

    def _close(self) -> None:
        self._rt = None

    def runtime_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.runtime_name, "threads": _threads(self.options.threads)}
        if self.is_active:
            info.update(via=self._rt.via, version=f"executorch {self._rt.version}".strip())
        return info
