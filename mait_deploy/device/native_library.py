"""The native runner's C ABI (mait_deploy/native/include/mait/mait_c.h) from Python: numpy and ctypes only.

A device that has the runtime's C/C++ library but not its Python package (ExecuTorch's links libtorch) runs a
bundle through ``libmait_runner_c.so``, built by the generated app (`mait-deploy app BUNDLE -o DIR`, then
``DIR/build/libmait_runner_c.so``) or by `remote ... --native` on a board. Where it is: a runner's
``native_library`` option, else the ``MAIT_NATIVE_LIBRARY`` environment variable.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from mait_deploy.errors import BundleError, MaitDeployError

LIBRARY_ENV = "MAIT_NATIVE_LIBRARY"
LIBRARY_NAME = "libmait_runner_c.so"
_ERROR_SIZE = 1024


def library_path(explicit: str | None) -> Path | None:
    """The library a runner was told to use (its option, else the environment), or None."""
    where = explicit or os.environ.get(LIBRARY_ENV)
    if not where:
        return None
    path = Path(where)
    return path / LIBRARY_NAME if path.is_dir() else path


class NativeSession:
    """One bundle opened by the native runner's library."""

    def __init__(self, library: ctypes.CDLL, handle: ctypes.c_void_p, classes: int) -> None:
        self._library, self._handle, self.classes = library, handle, classes
        text = ctypes.create_string_buffer(512)
        library.mait_runner_describe(handle, text, len(text))
        self.description = text.value.decode(errors="replace")

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """Logits [N, classes] of a contiguous float32 [N, C, H, W] batch, and the runtime's own milliseconds."""
        logits = np.empty((len(batch), self.classes), np.float32)
        runtime_ms = ctypes.c_double(0.0)
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        status = self._library.mait_runner_run(
            self._handle, batch.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.c_int64(len(batch)),
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.byref(runtime_ms), error, len(error))
        if status != 0:
            raise MaitDeployError(f"native runner: {error.value.decode(errors='replace')}")
        return logits, runtime_ms.value

    def close(self) -> None:
        if self._handle:
            self._library.mait_runner_close(self._handle)
            self._handle = None


def open_native(path: Path, bundle: Path, runtime: str, classes: int, threads: int) -> NativeSession:
    """Open ``bundle`` with the library at ``path``, which must have been built for ``runtime``. The bundle's files
    were hashed by the Python side already: the library does not hash them again."""
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        raise BundleError(f"cannot load the native runner library {path}: {err}") from err
    library.mait_runtime.restype = ctypes.c_char_p
    library.mait_runner_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64,
                                        ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_double),
                                        ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_describe.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_close.argtypes = [ctypes.c_void_p]
    built_for = library.mait_runtime().decode()
    if built_for != runtime:
        raise BundleError(f"the native runner library {path} was built for {built_for}; this is a {runtime} bundle")
    handle = ctypes.c_void_p()
    error = ctypes.create_string_buffer(_ERROR_SIZE)
    if library.mait_runner_open(str(bundle).encode(), threads, 0, ctypes.byref(handle), error, len(error)) != 0:
        raise BundleError(f"native runner: {error.value.decode(errors='replace')}")
    return NativeSession(library, handle, classes)
