"""Counted (not estimated) model statistics: parameters and FLOPs per image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mait_deploy.config import MaiTConfig
from mait_deploy.host.model.mait import VARIANTS, MaiT


@dataclass(frozen=True)
class ModelStats:
    name: str
    params: int
    flops: int  # per image, counted by torch's FlopCounterMode (2 FLOPs per multiply-add)
    tokens: int
    embed_dim: int
    depth: int
    num_heads: int
    masked_heads: tuple[int, ...]
    masked_blocks: int
    window: int
    input_shape: tuple[int, int, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        return self.flops / 2e9

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gflops=round(self.gflops, 4), gmacs=round(self.gmacs, 4))
        return data


def count_flops(model: MaiT) -> int:
    """FLOPs of one forward pass at batch 1: matmuls, linear layers and the patch convolution (what torch's
    FlopCounterMode counts). Softmax, LayerNorm, GELU and the bias Add are elementwise and not counted."""
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
        tokens=config.num_patches, embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads,
        masked_heads=config.mask.heads(config.num_heads), masked_blocks=len(config.mask.blocks(config.depth)),
        window=config.mask.window, input_shape=config.input_shape,
    )


def variant_stats() -> list[ModelStats]:
    """Statistics of every registered variant (builds each model once, with random weights)."""
    return [model_stats(config) for config in VARIANTS.values()]
