"""The models a comparison times: MaiT variants/checkpoints (exported and verified here) and baselines (a timm
model name, exported by timm in this Python or in ``timm_python``; or an FP32 ONNX file).

A baseline is not a MaiT: its ModelSource is ``external`` (its own softmax constants are not masks to check) and
its config only describes the input, output and preprocessing the bundles need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mait_deploy.config import MaiTConfig, PreprocessConfig
from mait_deploy.errors import ExportError, UnsupportedOption
from mait_deploy.host.compare import timm_export
from mait_deploy.host.compile.source import ModelSource, source_from_export
from mait_deploy.host.export.onnx import INPUT_NAME, OUTPUT_NAME, ExportOptions, export_onnx
from mait_deploy.host.export.parity import ort_predictor
from mait_deploy.host.model.zoo import resolve_checkpoint
from mait_deploy.mask_config import MaskConfig

TIMM_SCRIPT = Path(__file__).with_name("timm_export.py")
DEFAULT_BASELINES = ("deit_tiny_patch16_224", "cait_xxs24_224", "swin_tiny_patch4_window7_224")
DEFAULT_MODELS = ("mait_t_patch16_224", "mait_pyramid_t_224", "mait_pyramid_s_224")
PARITY_LIMIT = 1e-3  # ONNX vs the framework's own output, max |diff| of the logits
# The ImageNet-1k top-1 (%) each baseline's paper reports at 224 px, and where. Nothing here measures it: it is the
# accuracy the architecture reaches when trained, the x axis of compare_pareto.png (images/s measured here on the y).
# The MaiT variants' figures are PAPER_FIGURES in host/model/mait.py.
PAPER_TOP1: dict[str, tuple[float, str]] = {
    "deit_tiny_patch16_224": (72.2, "DeiT (Touvron et al. 2021), Table 1"),
    "deit_small_patch16_224": (79.8, "DeiT (Touvron et al. 2021), Table 1"),
    "deit_base_patch16_224": (81.8, "DeiT (Touvron et al. 2021), Table 1"),
    "cait_xxs24_224": (78.4, "CaiT (Touvron et al. 2021), distilled, 224 px"),
    "cait_xxs36_224": (79.7, "CaiT (Touvron et al. 2021), distilled, 224 px"),
    "cait_s24_224": (83.5, "CaiT (Touvron et al. 2021), distilled, 224 px"),
    "swin_tiny_patch4_window7_224": (81.3, "Swin (Liu et al. 2021), Table 1a"),
    "swin_small_patch4_window7_224": (83.0, "Swin (Liu et al. 2021), Table 1a"),
    "swin_base_patch4_window7_224": (83.5, "Swin (Liu et al. 2021), Table 1a"),
}
MAIT_PAPER = "MaiT (Li et al. 2022, arXiv 2207.03006), Table 3"


@dataclass
class CompareModel:
    name: str
    role: str  # "mait" or "baseline"
    origin: str  # variant (random weights) / checkpoint / timm / onnx
    params: int | None
    flops: int | None  # per image, 2 per multiply-add
    source: ModelSource
    note: str = ""
    no_torch_module: str = ""  # why there is no PyTorch module (LiteRT converts from one); empty when there is
    paper_top1: float | None = None  # the architecture's ImageNet top-1 as its paper reports it (not these weights)
    paper_source: str = ""

    def facts(self) -> "ModelFacts":
        return ModelFacts(name=self.name, role=self.role, origin=self.origin, params=self.params, flops=self.flops,
                          gflops=None if self.flops is None else round(self.flops / 1e9, 3),
                          input_shape=list(self.source.config.input_shape), note=self.note,
                          paper_top1=self.paper_top1, paper_source=self.paper_source)


@dataclass
class ModelFacts:
    """A compared model as the report describes it."""

    name: str
    role: str  # mait | baseline
    origin: str
    params: int | None
    flops: int | None  # counted, 2 per multiply-add
    gflops: float | None
    input_shape: list[int]
    note: str = ""
    paper_top1: float | None = None  # the ImageNet-1k top-1 its paper reports (the Pareto plot's x)
    paper_source: str = ""


def interface_config(name: str, input_shape: tuple[int, int, int], num_classes: int,
                     preprocess: PreprocessConfig | None = None) -> MaiTConfig:
    """A config describing only a baseline's input, output and preprocessing (its architecture is not a MaiT)."""
    channels, height, width = input_shape
    if height != width or channels not in (1, 3):
        raise UnsupportedOption(f"baseline {name}: input {list(input_shape)} is not a square 1- or 3-channel image")
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if channels == 3 else ((0.5,), (0.5,))
    preprocess = preprocess or PreprocessConfig(input_size=height, channels=channels, mean=mean, std=std)
    return MaiTConfig(name=name, backbone="deit", img_size=height, patch_size=height, in_chans=channels,
                      num_classes=num_classes, embed_dim=1, depth=1, num_heads=1, init_values=None,
                      mask=MaskConfig(enabled=False), preprocess=preprocess)


def mait_model(spec: str, work: Path, step: Callable[[str], None]) -> CompareModel:
    """A registered variant (seeded random weights: speed only) or a checkpoint, exported and verified."""
    import torch

    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.mait import PAPER_FIGURES, VARIANTS, create_model
    from mait_deploy.host.model.stats import model_stats

    if spec in VARIANTS:
        torch.manual_seed(0)
        model, origin = create_model(spec).eval(), "variant (random weights)"
    else:
        model, origin = load_checkpoint(resolve_checkpoint(spec)), "checkpoint"
    step(f"{spec}: exporting to ONNX")
    path = work / "onnx" / f"{_safe(spec)}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = export_onnx(model, path, ExportOptions(force=True))
    stats = model_stats(model)
    paper = PAPER_FIGURES.get(spec) if spec in VARIANTS else None
    return CompareModel(name=model.config.name if spec in VARIANTS else _safe(spec), role="mait", origin=origin,
                        params=stats.params, flops=stats.flops,
                        source=source_from_export(model, path, result.to_dict()),
                        paper_top1=paper["top1"] if paper else None, paper_source=MAIT_PAPER if paper else "")


def timm_in_process() -> str | None:
    """None when timm imports here, else why not (one line)."""
    try:
        import timm  # noqa: F401
    except Exception as err:  # timm needs a torchvision that matches this torch; a mismatch raises anything
        return f"timm does not import in this Python ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    return None


def baseline_model(spec: str, work: Path, step: Callable[[str], None], timm_python: str | None) -> CompareModel:
    """``NAME`` or ``NAME=WEIGHTS`` (timm) or ``PATH.onnx``."""
    if spec.lower().endswith(".onnx"):
        return _onnx_baseline(Path(spec), work)
    name, _, checkpoint = spec.partition("=")
    if not name.replace("_", "").replace(".", "").isalnum():
        raise UnsupportedOption(f"baseline {spec!r} is neither a timm model name nor an .onnx file")
    if checkpoint and not Path(checkpoint).is_file():
        raise UnsupportedOption(f"baseline {name}: checkpoint {checkpoint} not found")
    out = work / "timm" / _safe(name)
    step(f"{name}: building with timm and exporting to ONNX")
    module = None
    if timm_python is None and timm_in_process() is None:
        try:
            module = timm_export.build(name, checkpoint or None)
            timm_export.export(module, name, out)
        except Exception as err:
            raise ExportError(f"baseline {name}: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    else:
        python = timm_python or sys.executable
        why = timm_in_process() if timm_python is None else None
        if why:
            raise UnsupportedOption(f"baseline {name}: {why}; pass --timm-python with a Python where timm imports")
        args = [python, str(TIMM_SCRIPT), name, str(out)] + (["--checkpoint", checkpoint] if checkpoint else [])
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ExportError(f"baseline {name}: cannot run {python}: {err}") from err
        if done.returncode:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ExportError(lines[-1] if lines else f"baseline {name}: the timm export failed ({done.returncode})")
    info = json.loads((out / "info.json").read_text())
    _check_parity(out, name)
    missing = ""
    if module is None:
        module, missing = _load_exported(out / "model.pt2", name, timm_python or sys.executable)
    config = interface_config(name, tuple(info["input_shape"]), info["num_classes"], PreprocessConfig(
        input_size=info["input_shape"][1], channels=info["input_shape"][0], mean=tuple(info["mean"]),
        std=tuple(info["std"]), interpolation=info["interpolation"] if info["interpolation"] in (
            "nearest", "bilinear", "bicubic") else "bicubic", crop_pct=min(1.0, float(info["crop_pct"]))))
    source = ModelSource(onnx_path=out / "model.onnx", config=config, torch_model=module,
                         export_report={"opset": 17, "timm": info["versions"]}, external=f"timm {name}")
    # A checkpoint's accuracy is its own, not the paper's.
    paper_top1, paper_source = (None, "") if checkpoint else PAPER_TOP1.get(name, (None, ""))
    return CompareModel(name=name, role="baseline", origin="timm" + (" checkpoint" if checkpoint else
                                                                      " (random weights)"),
                        params=info["params"], flops=info["flops"], source=source, no_torch_module=missing,
                        paper_top1=paper_top1, paper_source=paper_source)


def _load_exported(path: Path, name: str, python: str) -> tuple[Any, str]:
    """The torch.export program timm's Python saved, as a module here (None and why when it does not load: a
    program saved by a newer torch may not load in this one)."""
    try:
        from mait_deploy.host.compare.exported import ExportedModule

        return ExportedModule(path.read_bytes()), ""
    except Exception as err:
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        return None, f"the torch.export program {python} saved for {name} does not load here ({first})"


def _check_parity(out: Path, name: str) -> None:
    with np.load(out / "reference.npz") as data:
        inputs, expected = data["input"], data["output"]
    got = ort_predictor(str(out / "model.onnx"))(inputs)
    diff = float(np.abs(got - expected).max())
    if not diff <= PARITY_LIMIT:
        raise ExportError(f"baseline {name}: the ONNX export differs from timm by {diff:.2g} (limit {PARITY_LIMIT})")


def _onnx_baseline(path: Path, work: Path) -> CompareModel:
    onnx = __import__("onnx")
    if not path.is_file():
        raise UnsupportedOption(f"baseline ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise ExportError(f"{path}: not an ONNX model ({type(err).__name__})") from err
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedOption(f"{path}: a baseline ONNX needs one image input and one output")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:] or dims[0] is not None or len(out_dims) != 2 or not out_dims[1]:
        raise UnsupportedOption(f"{path}: a baseline ONNX needs a dynamic-batch [N, C, H, W] input and [N, classes] "
                                f"output, got {dims} -> {out_dims}")
    params = int(sum(np.prod(i.dims) for i in graph.initializer))
    name = path.stem
    channels, height, width = (int(d or 0) for d in dims[1:])  # checked above: none is None
    config = interface_config(name, (channels, height, width), int(out_dims[1]))

    renames = {inputs[0].name: INPUT_NAME, graph.output[0].name: OUTPUT_NAME}  # the names every runner uses
    for value in (inputs[0], graph.output[0]):
        value.name = renames[value.name]
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    copy = work / "onnx" / f"{_safe(name)}.baseline.onnx"
    copy.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(copy))
    source = ModelSource(onnx_path=copy, config=config, export_report={"path": str(path)}, external=f"onnx {path}")
    return CompareModel(name=name, role="baseline", origin="onnx file", params=params, flops=None, source=source,
                        note="FLOPs not counted for an ONNX file", no_torch_module="an ONNX file has no PyTorch module")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(name.rstrip("/")))
