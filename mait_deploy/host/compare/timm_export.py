"""Export a timm model to ONNX for `mait-deploy compare`. Runs in any Python where timm imports (this one, or the
one ``--timm-python`` names) and never imports mait_deploy:

    python timm_export.py NAME OUT_DIR [--checkpoint WEIGHTS] [--seed 0]

writes OUT_DIR/model.onnx (FP32, dynamic batch, opset 17, torch's dynamo exporter), OUT_DIR/model.pt2 (the
torch.export program, for converters that start from PyTorch), OUT_DIR/reference.npz (an
input batch and timm's own output for the parity check done by the caller) and OUT_DIR/info.json (params, FLOPs
counted by torch's FlopCounterMode at 2 per multiply-add, input shape, versions). Random weights (seeded) unless
a checkpoint is given; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

OPSET = 17


def build(name: str, checkpoint: str | None = None, seed: int = 0) -> Any:
    """The timm model in eval mode: random weights from ``seed``, or the checkpoint's."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    if checkpoint:
        state = (__import__("safetensors.torch", fromlist=["load_file"]).load_file(checkpoint)
                 if checkpoint.endswith(".safetensors") else torch.load(checkpoint, map_location="cpu",
                                                                         weights_only=True))
        state = state.get("model", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    return model.eval()


def export(model: Any, name: str, out: Path) -> dict[str, object]:
    import numpy as np
    import timm
    import torch
    from torch.export import Dim
    from torch.utils.flop_counter import FlopCounterMode

    out.mkdir(parents=True, exist_ok=True)
    config = getattr(model, "pretrained_cfg", {}) or {}
    shape = tuple(config.get("input_size", (3, 224, 224)))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(example).numpy()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=OPSET,
                                    dynamic_shapes={"x": {0: Dim("batch")}}, input_names=["input"],
                                    output_names=["logits"])
    assert program is not None  # f=None: the program is returned
    program.save(str(out / "model.onnx"))
    # The same model as a torch.export program (dynamic batch): the caller loads it when its own Python cannot
    # import timm, for converters that start from PyTorch (LiteRT).
    exported = torch.export.export(model, (example,), dynamic_shapes={"x": {0: Dim("batch", min=1, max=1024)}})
    torch.export.save(exported, str(out / "model.pt2"))
    np.savez(out / "reference.npz", input=example.numpy(), output=reference)
    info = {"name": name, "params": int(sum(p.numel() for p in model.parameters())),
            "flops": int(counter.get_total_flops()), "input_shape": list(shape),
            "num_classes": int(reference.shape[1]), "mean": list(config.get("mean", (0.485, 0.456, 0.406))),
            "std": list(config.get("std", (0.229, 0.224, 0.225))),
            "interpolation": config.get("interpolation", "bicubic"), "crop_pct": config.get("crop_pct", 1.0),
            "versions": {"timm": timm.__version__, "torch": torch.__version__}}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        model = build(args.name, args.checkpoint, args.seed)
        export(model, args.name, args.out)
    except Exception as err:  # one line for the caller, whatever timm or torch raised
        print(f"error: {args.name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
