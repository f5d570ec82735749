"""ExecuTorch runner: the .pte through ExecuTorch's Python runtime (pybind over its C++ runtime and XNNPACK
delegate), or through the native runner's library (mait_deploy/native's C ABI, built against the wheel's C++
runtime) where one is named. The Python runtime links libtorch, so a torch-free device uses the library: its
device setting (device/native_library.py). Both run the same C++ runtime; the
golden set checks they agree, and ``runtime_info`` says which one ran (``via``). The library is a device setting
(``RunnerOptions.native_library``, ``--native-library`` or MAIT_NATIVE_LIBRARY), never a bundle's: code a
manifest named would run with the device's rights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._deps import package_versions
from mait_deploy.device.native_library import LIBRARY_ENV, library_path, open_native
from mait_deploy.device.runner import Runner
from mait_deploy.errors import BundleError, MissingDependency


def _package_version() -> str:
    """The executorch wheel's version (a device running the native library has the wheel: it is the SDK)."""
    return package_versions("executorch")["executorch"]


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
        self.version, self.detail = _package_version(), "XNNPACK delegate"

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._method.execute([self._torch.from_numpy(batch)])[0]
        return out.numpy().astype(np.float32, copy=True)


class _NativeRuntime:
    """The native runner's library (numpy + ctypes)."""

    via = "native library"

    def __init__(self, library: Path, runner: Runner, threads: int) -> None:
        self._session = open_native(library, runner.bundle_dir, runner.runtime_name, runner.num_classes, threads)
        self.input_shape = (runner.fixed_batch, *runner.sample_shape)  # the library checks the program's own
        self.version, self.detail = _package_version(), self._session.description

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(batch)[0]

    def close(self) -> None:
        self._session.close()


class ExecuTorchRunner(Runner):
    layer_profiler_missing = "ExecuTorch's op profiler (ETDump) needs a runtime built with event tracing"

    @property
    def load_may_crash(self) -> bool:
        """ExecuTorch's Python runtime aborts on some corrupt programs (a string that is not UTF-8 ends in
        std::terminate in its bindings); the native library loads with InternalConsistency and raises."""

        return library_path(self.options.native_library) is None

    def _load(self) -> None:
        threads = self.threads_or_all_cores()
        library = library_path(self.options.native_library)
        if library is not None:
            self._rt = _NativeRuntime(library, self, threads)
            return
        try:
            self._rt = _PythonRuntime(str(self.bundle_dir / self.manifest.artifact.path), threads)
        except ImportError as err:
            raise MissingDependency(
                "executorch", extra="executorch",
                detail=f"its Python runtime needs torch; a torch-free device runs this bundle through the native "
                       f"runner's library: build it with `mait-deploy app BUNDLE -o DIR` and set {LIBRARY_ENV}="
                       f"DIR/build/libmait_runner_c.so") from err
        expected = (self.fixed_batch, *self.sample_shape)
        if tuple(self._rt.input_shape) != expected:
            raise BundleError(f"the program's input is {list(self._rt.input_shape)}; the manifest says "
                              f"{list(expected)}")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._rt.run(batch)

    def _close(self) -> None:
        if isinstance(self._rt, _NativeRuntime):
            self._rt.close()
        self._rt = None

    def runtime_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.runtime_name, "threads": self.threads_or_all_cores()}
        if self.is_active:
            info.update(via=self._rt.via, version=self._rt.version, detail=self._rt.detail)
        return info
