"""The native runner's C ABI (mait_deploy/native/include/mait/mait_c.h) from Python: numpy and ctypes only.

A device that has the runtime's C/C++ library but not its Python package (ExecuTorch's links libtorch) runs a
bundle through ``libmait_runner_c.so``, built by the generated app (`mait-deploy app BUNDLE -o DIR`, then
``DIR/build/libmait_runner_c.so``) or by `remote ... --native` on a board. Where it is: a device setting
(``RunnerOptions.native_library``, the commands' ``--native-library``), else the ``MAIT_NATIVE_LIBRARY`` environment
variable; never a bundle's manifest. A library that does not export this project's ABI version is refused before
any of its functions is called.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from mait_deploy.errors import BundleError, MaitDeployError

LIBRARY_ENV = "MAIT_NATIVE_LIBRARY"
LIBRARY_NAME = "libmait_runner_c.so"
ABI_VERSION = 2  # MAIT_ABI_VERSION in mait_c.h
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

    def __init__(self, library: ctypes.CDLL, handle: ctypes.c_void_p) -> None:
        self._library, self._handle = library, handle
        text = ctypes.create_string_buffer(512)
        library.mait_runner_describe(handle, text, len(text))
        self.description = text.value.decode(errors="replace")
        classes, shape = ctypes.c_int64(0), (ctypes.c_int64 * 3)()
        library.mait_runner_shape(handle, ctypes.byref(classes), shape)
        self.classes, self.sample_shape = int(classes.value), tuple(int(d) for d in shape)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """Logits [N, classes] of a contiguous float32 [N, C, H, W] batch, and the runtime's own milliseconds."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.sample_shape:
            raise BundleError(f"native runner: inputs must be [N, {', '.join(map(str, self.sample_shape))}], got "
                              f"{list(batch.shape)}")
        logits = np.empty((len(batch), self.classes), np.float32)
        runtime_ms = ctypes.c_double(0.0)
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        status = self._library.mait_runner_run(
            self._handle, batch.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.c_int64(len(batch)),
            logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.c_size_t(logits.size),
            ctypes.byref(runtime_ms), error, len(error))
        if status != 0:
            raise MaitDeployError(f"native runner: {error.value.decode(errors='replace')}")
        return logits, runtime_ms.value

    def close(self) -> None:
        if self._handle:
            self._library.mait_runner_close(self._handle)
            self._handle = None


def load_library(path: Path) -> ctypes.CDLL:
    """The native runner's library at ``path``, its ABI checked before any of its functions is called."""
    if not path.is_file():
        raise BundleError(f"the native runner library {path} does not exist (build it: mait-deploy app BUNDLE "
                          f"-o DIR, then DIR/build/{LIBRARY_NAME})")
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        raise BundleError(f"cannot load the native runner library {path}: {err}") from err
    try:
        version_of = library.mait_abi_version
    except AttributeError:
        raise BundleError(f"{path} is not mait-deploy's native runner library (it exports no mait_abi_version)") \
            from None
    version_of.restype, version_of.argtypes = ctypes.c_int, []
    if version_of() != ABI_VERSION:
        raise BundleError(f"{path} implements the native runner's ABI {version_of()}; this mait-deploy needs "
                          f"{ABI_VERSION}: rebuild it with this version (mait-deploy app BUNDLE -o DIR)")
    library.mait_runtime.restype = ctypes.c_char_p
    library.mait_runner_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64,
                                        ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_double), ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_shape.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                                          ctypes.POINTER(ctypes.c_int64)]
    library.mait_runner_describe.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    library.mait_runner_close.argtypes = [ctypes.c_void_p]
    return library


def open_native(path: Path, bundle: Path, runtime: str, classes: int, threads: int) -> NativeSession:
    """Open ``bundle`` with the library at ``path``, which must have been built for ``runtime``. The bundle's files
    were hashed (and its signature checked) by the Python side already: the library does not hash them again."""
    library = load_library(path)
    built_for = library.mait_runtime().decode(errors="replace")
    if built_for != runtime:
        raise BundleError(f"the native runner library {path} was built for {built_for}; this is a {runtime} bundle")
    handle = ctypes.c_void_p()
    error = ctypes.create_string_buffer(_ERROR_SIZE)
    if library.mait_runner_open(str(bundle).encode(), threads, 0, ctypes.byref(handle), error, len(error)) != 0:
        raise BundleError(f"native runner: {error.value.decode(errors='replace')}")
    session = NativeSession(library, handle)
    if session.classes != classes:
        session.close()
        raise BundleError(f"native runner: the library reads {session.classes} classes; the manifest says {classes}")
    return session
