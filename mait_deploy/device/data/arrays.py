"""Read images and labels from .npy/.npz files without trusting their size: shapes and dtypes are read from the
headers first, and only the rows asked for are decoded (a 1.5 MB .npz can declare gigabytes of zeros).

A ``.npy`` file is memory-mapped; an ``.npz`` member is streamed row by row, keeping only the chosen rows, so
memory is bounded by what is returned, not by what the file declares. Object arrays (pickles) are refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from mait_deploy.errors import DataError

MAX_ARRAY_BYTES = 2 << 30  # what one call may hold in memory: far above any calibration or evaluation set
IMAGE_KEYS = ("images", "x", "inputs")
LABEL_KEYS = ("labels", "y")
_CHUNK_BYTES = 8 << 20


class ArrayFile:
    """The image array (and labels, if any) of a .npy/.npz file, read lazily."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self.labels: np.ndarray | None = None
        try:
            if path.suffix.lower() == ".npy":
                self._images = np.load(path, mmap_mode="r", allow_pickle=False)
                self.shape, self.dtype = self._images.shape, self._images.dtype
                return
            self._zip = zipfile.ZipFile(path)
            members = {name.removesuffix(".npy"): name for name in self._zip.namelist()}
            image_key = next((k for k in IMAGE_KEYS if k in members), None)
            if image_key is None:
                raise DataError(f"{path} has no 'images' array (found: {', '.join(sorted(members))})")
            self._image_member = members[image_key]
            self.shape, self.dtype, self._fortran = self._header(self._image_member)
            label_key = next((k for k in LABEL_KEYS if k in members), None)
            if label_key is not None:
                self.labels = self._read(members[label_key])
        except DataError:
            self.close()
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError) as err:
            self.close()
            raise DataError(f"cannot read {path}: {str(err).splitlines()[0][:200]}") from err
        if self.dtype.hasobject:
            self.close()
            raise DataError(f"{path}: object arrays are refused (they would need pickle)")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> "ArrayFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    def _header(self, member: str) -> tuple[tuple[int, ...], np.dtype, bool]:
        with self._zip.open(member) as handle:
            return _read_header(handle)

    def _read(self, member: str) -> np.ndarray:
        """A whole (small) member, e.g. the labels, within the memory bound."""
        with self._zip.open(member) as handle:
            shape, dtype, fortran = _read_header(handle)
            if dtype.hasobject:
                raise DataError(f"{self.path}: object arrays are refused (they would need pickle)")
            return _read_rows(handle, shape, dtype, fortran, None, self.path)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The image rows at ``index`` (sorted), and nothing else decoded beyond the last of them."""
        if self._zip is None:
            return _bounded(np.asarray(self._images[index]), self.path)
        with self._zip.open(self._image_member) as handle:
            shape, dtype, fortran = _read_header(handle)
            return _read_rows(handle, shape, dtype, fortran, index, self.path)


def _read_header(handle) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(handle)
    reader: Callable = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = reader(handle)
    return tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran)


def _bounded(array: np.ndarray, path: Path) -> np.ndarray:
    if array.nbytes > MAX_ARRAY_BYTES:
        raise DataError(f"{path}: {array.nbytes / 2**30:.1f} GiB asked for (limit {MAX_ARRAY_BYTES / 2**30:.0f} GiB); "
                        f"use --count to draw fewer images")
    return array


def _read_rows(handle, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, index: np.ndarray | None,
               path: Path) -> np.ndarray:
    rows = shape[0] if shape else 1
    row_shape = shape[1:]
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    wanted = rows if index is None else len(index)
    if wanted * row_bytes > MAX_ARRAY_BYTES or (fortran and rows * row_bytes > MAX_ARRAY_BYTES):
        raise DataError(f"{path}: {wanted * row_bytes / 2**30:.1f} GiB asked for (limit "
                        f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB); use --count to draw fewer images")
    if index is None or fortran:
        data = handle.read(rows * row_bytes)
        if len(data) != rows * row_bytes:
            raise DataError(f"{path}: array data is truncated")
        array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        return np.array(array if index is None else array[index])
    out = np.empty((len(index), *row_shape), dtype=dtype)
    per_chunk = max(1, _CHUNK_BYTES // max(1, row_bytes))
    position, taken = 0, 0
    while taken < len(index):
        count = min(per_chunk, rows - position)
        data = handle.read(count * row_bytes)
        if len(data) != count * row_bytes:
            raise DataError(f"{path}: array data is truncated")
        chunk = np.frombuffer(data, dtype=dtype).reshape((count, *row_shape))
        stop = np.searchsorted(index, position + count)
        out[taken:stop] = chunk[index[taken:stop] - position]
        taken, position = stop, position + count
    return out
