"""Counted (not estimated) model statistics: parameters and FLOPs per image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mait_deploy._assets import VARIANT_TABLE
from mait_deploy._io import write_json
from mait_deploy.config import MaiTConfig
from mait_deploy.host.model.mait import PAPER_FIGURES, VARIANTS, MaiT


@dataclass(frozen=True)
class ModelStats:
    name: str
    params: int
    flops: int  # per image, counted by torch's FlopCounterMode (2 FLOPs per multiply-add)
    tokens: int  # tokens a self-attention block sees (patches + class/distillation tokens for deit)
    embed_dim: int
    depth: int
    num_heads: int
    backbone: str
    mask_mode: str
    masked_heads_per_block: tuple[int, ...]  # how many heads each self-attention block masks
    mask_patterns: int  # distinct patterns = mask constants in the exported graph
    window: str
    input_shape: tuple[int, int, int]
    paper: dict[str, float] | None = None  # the paper's params (M), GMACs and ImageNet top-1 for its variants

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.flops / 2e9

    @property
    def params_vs_paper(self) -> float | None:
        """Counted params / the paper's figure (None for variants the paper does not list)."""
        return None if self.paper is None else self.params / (self.paper["params_m"] * 1e6)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gflops=round(self.gflops, 4), gmacs=round(self.gmacs, 4))
        if self.paper is not None:
            data.update(params_vs_paper=round(self.params_vs_paper, 4),
                        gmacs_vs_paper=round(self.gmacs / self.paper["gmacs"], 4))
        return data


def count_flops(model: MaiT) -> int:
    """FLOPs of one forward pass at batch 1: matmuls, linear layers and the patch convolution (what torch's
    FlopCounterMode counts). Softmax, LayerNorm, GELU and the mask Add/Mul are elementwise and not counted."""
    was_training = model.training
    model.eval()
    example = torch.zeros((1, *model.config.input_shape))
    # No torch.no_grad(): FlopCounterMode's module tracker needs autograd on (it asserts otherwise).
    with FlopCounterMode(display=False) as counter:
        model(example)
    model.train(was_training)
    return int(counter.get_total_flops())


def model_stats(model_or_config: MaiT | MaiTConfig) -> ModelStats:
    model = model_or_config if isinstance(model_or_config, MaiT) else MaiT(model_or_config)
    config = model.config
    return ModelStats(
        name=config.name, params=sum(p.numel() for p in model.parameters()), flops=count_flops(model),
        tokens=config.num_tokens, embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads,
        backbone=config.backbone, mask_mode=config.mask.mode,
        masked_heads_per_block=tuple(len(heads) for heads in config.layer_heads()),
        mask_patterns=len(model.mask_names), window=config.mask.window_label, input_shape=config.input_shape,
        paper=PAPER_FIGURES.get(config.name),
    )


def variant_stats() -> list[ModelStats]:
    """Statistics of every registered variant (builds each model once, with random weights)."""
    return [model_stats(config) for config in VARIANTS.values()]


def write_variant_table(path: Path = VARIANT_TABLE) -> None:
    """Count every variant and write the table `mait-deploy models` prints without torch
    (``python -m mait_deploy.host.model.stats``; tests/host/test_model.py checks it against a fresh count)."""
    write_json(path, [stats.to_dict() for stats in variant_stats()])


if __name__ == "__main__":
    write_variant_table()
