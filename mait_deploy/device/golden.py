"""Assemble a bundle folder: artifact files, golden I/O and the manifest (with every file's sha256)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._io import sha256_file
from mait_deploy.device.manifest import (
    GOLDEN_FILE,
    SCHEMA_VERSION,
    FileEntry,
    Manifest,
    TensorSpec,
)

GOLDEN_COUNT = 8
# How far a device may differ from the host's outputs of the same artifact on the golden images.
GOLDEN_TOLERANCE = {
    "fp32": {"max_abs_diff": 1e-3, "min_top1_agreement": 1.0},
    "fp16": {"max_abs_diff": 5e-2, "min_top1_agreement": 1.0},
    "bf16": {"max_abs_diff": 1e-1, "min_top1_agreement": 1.0},
    "int8": {"max_abs_diff": 5e-1, "min_top1_agreement": 1.0},
}


def file_entry(folder: Path, name: str) -> FileEntry:
    path = folder / name
    return FileEntry(path=name, sha256=sha256_file(path), bytes=path.stat().st_size)


def choose_golden(raw_images: Any, inputs: np.ndarray, reference_logits: np.ndarray,
                  count: int = GOLDEN_COUNT) -> np.ndarray:
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


def golden_arrays(raw_images: Any, inputs: np.ndarray, index: np.ndarray) -> dict[str, np.ndarray]:
    """The golden images: raw pixels when the source kept a uniform uint8 array (so verify exercises
    preprocessing too), else the preprocessed inputs."""
    if isinstance(raw_images, np.ndarray) and raw_images.dtype == np.uint8:
        return {"images": raw_images[index]}
    return {"inputs": inputs[index]}


def write_golden(folder: Path, arrays: dict[str, np.ndarray]) -> FileEntry:
    np.savez_compressed(folder / GOLDEN_FILE, **arrays)
    return file_entry(folder, GOLDEN_FILE)


def make_manifest(folder: Path, *, config: dict[str, Any], target: str, precision: str, artifact: str,
                  side_files: list[str], inputs: list[TensorSpec], outputs: list[TensorSpec], batch: int | str,
                  runtime: dict[str, Any], golden: dict[str, Any], accuracy: dict[str, Any] | None,
                  source: dict[str, Any], tool_versions: dict[str, str], build: dict[str, Any]) -> Manifest:
    return Manifest(
        schema_version=SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        model=config, target=target, precision=precision, artifact=file_entry(folder, artifact),
        inputs=inputs, outputs=outputs, batch=batch, runtime=runtime, golden=golden, accuracy=accuracy,
        files=[file_entry(folder, name) for name in side_files], source=source, tool_versions=tool_versions,
        build=build,
    )
