"""The golden set: a few images and the outputs this artifact gave for them on the build host, so that ``verify``
on a device checks its whole path (preprocessing + runtime) against the build.

A golden set holds either raw uint8 images (``kind="images"``: the device runs its own preprocessing on them,
as it will on camera frames) or, when the evaluation data had no uniform raw array (an image folder of mixed
sizes, float arrays), the preprocessed float32 inputs (``kind="inputs"``). ``GoldenSet.outputs`` runs either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._io import atomic_path
from mait_deploy.device.logits import Tolerance
from mait_deploy.device.manifest import GOLDEN_ARRAY_DTYPES, GoldenArray
from mait_deploy.errors import BundleError

GOLDEN_FILE = "golden.bin"  # schema 3: uncompressed, laid out in the manifest (schema 1-2 bundles: golden.npz)
GOLDEN_COUNT = 8
KINDS = ("images", "inputs")
LITTLE_ENDIAN = {"uint8": "u1", "float32": "<f4"}  # golden.bin's dtypes as numpy reads and writes them
# How far a device may differ from the host's outputs of the same artifact on the golden images, and what each
# bound allows for (recorded in the manifest beside the CPU and runtime the golden outputs came from, so that
# `verify` on a device can say what its tolerance was calibrated on).
GOLDEN_TOLERANCE = {
    "fp32": Tolerance(max_abs_diff=1e-3, min_top1_agreement=1.0),
    "fp16": Tolerance(max_abs_diff=5e-2, min_top1_agreement=1.0),
    "bf16": Tolerance(max_abs_diff=1e-1, min_top1_agreement=1.0),
    "int8": Tolerance(max_abs_diff=5e-1, min_top1_agreement=1.0),
}
TOLERANCE_BASIS = {
    "fp32": "float32 rounding: another CPU's kernels, thread count or runtime version sum in another order",
    "fp16": "float16 rounding (11-bit mantissa) of the same graph on another device",
    "bf16": "bfloat16 rounding (8-bit mantissa) of the same graph on another device",
    "int8": "exact int8 arithmetic on any ISA (x86 VNNI or AVX2, Arm dot product): only the float parts and the "
            "requantization rounding differ; a u8s8 model on x86 without VNNI saturates and can exceed it "
            "(benchmarks/int8_isa.py measures both)",
}


@dataclass
class GoldenSet:
    kind: str  # "images" or "inputs"
    samples: np.ndarray  # uint8 raw images, or float32 [N, C, H, W] model inputs
    logits: np.ndarray  # this artifact's outputs on the build host
    reference_logits: np.ndarray  # the FP32 reference's outputs

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BundleError(f"golden set kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not len(self.samples) == len(self.logits) == len(self.reference_logits):
            raise BundleError("golden set: samples, logits and reference logits differ in length")

    @classmethod
    def record(cls, runner: Any, raw_images: Any, inputs: np.ndarray, index: np.ndarray,
               reference_logits: np.ndarray) -> "GoldenSet":
        """The golden set of evaluation rows ``index``, with ``runner``'s outputs for them: raw pixels when the
        source kept a uniform uint8 array (so verify exercises preprocessing too), else the preprocessed inputs.
        ``reference_logits`` are the FP32 reference's for the same rows."""
        if isinstance(raw_images, np.ndarray) and raw_images.dtype == np.uint8:
            kind, samples = "images", raw_images[index]
        else:
            kind, samples = "inputs", inputs[index]
        return cls(kind, samples, run_golden(runner, kind, samples), reference_logits)

    def outputs(self, runner: Any) -> np.ndarray:
        """This device's logits for the golden samples, through the path the kind calls for."""
        return run_golden(runner, self.kind, self.samples)

    def write(self, folder: Path) -> tuple[Path, list[GoldenArray]]:
        """Write the uncompressed golden file (little-endian arrays packed back to back: a C++ program reads it
        with the layout the manifest records, no zip or npy parser) and return it with that layout."""
        path = Path(folder) / GOLDEN_FILE
        arrays, blobs, offset = [], [], 0
        for name, values in ((self.kind, self.samples), ("logits", self.logits),
                             ("reference_logits", self.reference_logits)):
            dtype = GOLDEN_ARRAY_DTYPES[name]
            blob = np.ascontiguousarray(values, dtype=LITTLE_ENDIAN[dtype]).tobytes()
            arrays.append(GoldenArray(name=name, dtype=dtype, shape=[int(d) for d in values.shape], offset=offset))
            blobs.append(blob)
            offset += len(blob)
        with atomic_path(path, suffix=".bin") as temp:
            with open(temp, "wb") as handle:
                for blob in blobs:
                    handle.write(blob)
        return path, arrays

    @classmethod
    def read(cls, path: Path, kind: str | None = None, arrays: list[GoldenArray] | None = None) -> "GoldenSet":
        """``kind`` and ``arrays`` from the manifest: with ``arrays`` (schema 3) the uncompressed file they lay
        out, else (schema 1-2) an .npz, whose kind None (schema 1) takes from the file's arrays."""
        if arrays is not None:
            return cls._read_raw(path, kind, arrays)
        try:
            with np.load(path, allow_pickle=False) as data:
                found = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: unreadable golden set ({err})") from err
        kind = kind or next((k for k in KINDS if k in found), None)
        missing = [key for key in (kind, "logits", "reference_logits") if key not in found]
        if kind is None or missing:
            raise BundleError(f"{path}: golden set lacks {', '.join(map(str, missing or KINDS))}")
        return cls(kind, found[kind], found["logits"], found["reference_logits"])

    @classmethod
    def _read_raw(cls, path: Path, kind: str | None, arrays: list[GoldenArray]) -> "GoldenSet":
        expected = sum(array.nbytes for array in arrays)  # the manifest checked the layout is packed
        try:
            size = path.stat().st_size
            if size != expected:
                raise BundleError(f"{path}: golden file is {size} bytes; its manifest lays out {expected}")
            data = path.read_bytes()
        except OSError as err:
            raise BundleError(f"{path}: unreadable golden set ({err})") from err
        found = {array.name: np.frombuffer(data, dtype=LITTLE_ENDIAN[array.dtype], count=int(np.prod(array.shape)),
                                           offset=array.offset).reshape(array.shape).astype(array.dtype)
                 for array in arrays}
        return cls(kind or "images", found[kind or "images"], found["logits"], found["reference_logits"])


def run_golden(runner: Any, kind: str, samples: np.ndarray) -> np.ndarray:
    """Raw images go through the device's preprocessing (``predict``), model inputs straight to ``run``."""
    return runner.predict(samples).logits if kind == "images" else runner.run(samples)


def choose_golden(reference_logits: np.ndarray, count: int = GOLDEN_COUNT) -> np.ndarray:
    """Indices of images the reference classifies with the widest margins, spread over classes: a device's
    small numeric differences must not flip their labels."""
    top2 = np.sort(reference_logits, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    predicted = reference_logits.argmax(-1)
    chosen: list[int] = []
    for cls in np.unique(predicted):
        members = np.flatnonzero(predicted == cls)
        chosen.append(int(members[np.argmax(margin[members])]))
    rest = [int(i) for i in np.argsort(-margin) if int(i) not in chosen]
    chosen = sorted(chosen, key=lambda i: -margin[i])[:count]
    chosen += rest[: count - len(chosen)]
    return np.array(sorted(chosen))
