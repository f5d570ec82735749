"""The model source a target compiles from: the verified FP32 ONNX, plus the PyTorch model when there is one.

A checkpoint is exported (and verified) explicitly here, once; an ONNX file is taken as it is, its config read
from its metadata. Every artifact is then checked against the same reference outputs, whatever it was built from.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy._deps import require
from mait_deploy._io import sha256_file
from mait_deploy.config import MaiTConfig
from mait_deploy.device.accuracy import batched_logits
from mait_deploy.errors import ExportError
from mait_deploy.host.compile.activations import activation_bytes, gate_batch
from mait_deploy.host.export.onnx import ExportOptions, export_onnx, read_onnx_metadata
from mait_deploy.host.export.parity import ort_predictor
from mait_deploy.host.model.masks import check_constants
from mait_deploy.host.model.zoo import resolve_checkpoint


@dataclass
class ModelSource:
    onnx_path: Path
    config: MaiTConfig
    torch_model: Any | None = None
    export_report: dict[str, Any] = field(default_factory=dict)
    # A model that is not a MaiT (compare's baselines, e.g. a timm Swin): ``config`` then only describes its input,
    # output and preprocessing, and the constants before its softmaxes are its own, not masks to check.
    external: str | None = None
    _reference_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def onnx_sha256(self) -> str:
        return sha256_file(self.onnx_path)

    @functools.cached_property
    def onnx_node_names(self) -> frozenset[str]:
        """The ONNX graph's node names, read once for every build from this source."""
        onnx = require("onnx", extra="export")
        return frozenset(node.name for node in onnx.load(str(self.onnx_path), load_external_data=False).graph.node)

    @functools.cached_property
    def activation_bytes(self) -> int:
        """The bytes of every intermediate tensor of one image's forward pass (activations.py): what the batch
        sizes of a build and a build job's declared memory are chosen from."""

        return activation_bytes(self.onnx_path)

    def mask_problems(self, found: list[tuple[str, Any, int]]) -> list[str]:
        """What is wrong with the mask constants found in a built graph (``masks.check_constants``)."""
        if self.external:
            return []

        return check_constants(found, self.config)

    def describe(self) -> dict[str, Any]:
        parity = self.export_report.get("parity") or {}
        external = {"external": self.external} if self.external else {}
        return {**external, "onnx_sha256": self.onnx_sha256, "onnx_bytes": self.onnx_path.stat().st_size,
                "from_checkpoint": self.torch_model is not None,
                "export_parity": {k: parity.get(k) for k in ("max_abs_diff", "top1_agreement")} if parity else None,
                "opset": self.export_report.get("opset")}

    def reference_logits(self, inputs: np.ndarray) -> np.ndarray:
        """FP32 reference logits from ONNX Runtime on the verified FP32 ONNX.

        The same reference serves every target whether the source came from a checkpoint or an ONNX file; that
        ONNX was checked against PyTorch at export (max |diff| <= 1e-4, 100% top-1 agreement).
        """
        key = _inputs_key(inputs)
        if key not in self._reference_cache:
            self._reference_cache[key] = batched_logits(ort_predictor(str(self.onnx_path)), inputs,
                                                        gate_batch(self.activation_bytes))
        return self._reference_cache[key]

    def remember_reference_logits(self, inputs: np.ndarray, logits: np.ndarray) -> None:
        """Take ``logits`` as the reference on ``inputs`` (computed by another process on the same ONNX)."""
        self._reference_cache[_inputs_key(inputs)] = logits


def _inputs_key(inputs: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(inputs).tobytes()).hexdigest()


def source_from_onnx(path: str | os.PathLike[str]) -> ModelSource:
    """Use an already exported ONNX file (it must carry mait-deploy's metadata and a dynamic batch axis)."""

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    meta = read_onnx_metadata(path)
    if "model" not in meta:
        raise ExportError(f"{path} has no mait-deploy metadata; export it with `mait-deploy export` first")
    if meta.get("precision", "fp32") != "fp32":
        raise ExportError(f"{path} is a {meta['precision']} model; targets compile from the FP32 export")
    if meta.get("batch", "dynamic") != "dynamic":
        raise ExportError(f"{path} has a fixed batch of {meta['batch']}; targets compile from a dynamic-batch export")
    return ModelSource(onnx_path=path, config=MaiTConfig.from_dict(meta["model"]),
                       export_report={"path": str(path), "opset": None})


def source_from_checkpoint(checkpoint: Any, work_dir: Path, progress: Callable[[str], None] | None = None,
                           opset: int = 17) -> ModelSource:
    """Load a checkpoint (path, shipped name or None for the default) and export + verify its FP32 ONNX."""
    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.mait import MaiT

    model = checkpoint if isinstance(checkpoint, MaiT) else load_checkpoint(resolve_checkpoint(checkpoint))
    path = Path(work_dir) / "model.onnx"
    result = export_onnx(model, path, ExportOptions(opset=opset, force=True), progress=progress)
    return source_from_export(model, path, result.to_dict())


def source_from_export(model: Any, onnx_path: Path, export_report: dict[str, Any]) -> ModelSource:
    """The source for a PyTorch model and its verified FP32 export (``export_onnx``'s report)."""
    return ModelSource(onnx_path=Path(onnx_path), config=model.config, torch_model=model, export_report=export_report)


def prepare_source(model: Any, work_dir: Path, progress: Callable[[str], None] | None = None) -> ModelSource:
    """A checkpoint (or None/shipped name) is exported first; a ``.onnx`` path is used as it is, and so is a
    ModelSource already prepared (one export compiled for several targets)."""
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return source_from_onnx(model)
    return source_from_checkpoint(model, work_dir, progress)
