"""The pyramid backbone's token merging: a hierarchical MaiT shrinks its token grid between stages.

Layout (PiT/PVT-style, global attention in every stage): a patch embedding gives the first stage's grid; between
stages a 2x2 stride-2 convolution merges each 2x2 group of tokens into one wider token (what Swin's patch merging
computes: the four neighbours concatenated, then a linear layer), followed by a LayerNorm and the new stage's
own position embedding. There is no class token: the classifier sees the mean of the last stage's tokens.
A convolution, not Swin's strided slicing, because it is one standard operator on every backend and the same
linear map.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class TokenMerge(nn.Module):
    """[batch, grid*grid, in_dim] -> [batch, (grid/2)**2, out_dim] (+ the new stage's position embedding)."""

    def __init__(self, in_dim: int, out_dim: int, grid: int, eps: float) -> None:
        super().__init__()
        self.grid = grid
        self.reduce = nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2)
        self.norm = nn.LayerNorm(out_dim, eps=eps)
        self.pos_embed = nn.Parameter(torch.zeros(1, (grid // 2) ** 2, out_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        grid = x.transpose(1, 2).reshape(batch, dim, self.grid, self.grid)
        return self.norm(self.reduce(grid).flatten(2).transpose(1, 2)) + self.pos_embed


def token_merges(stage_dims: tuple[int, ...], first_grid: int, eps: float) -> nn.ModuleList:
    """One TokenMerge into every stage after the first."""
    return nn.ModuleList(TokenMerge(stage_dims[stage - 1], stage_dims[stage], first_grid >> (stage - 1), eps)
                         for stage in range(1, len(stage_dims)))
