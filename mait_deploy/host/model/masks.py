"""Locality masks as additive attention biases (numpy; the model turns the result into one buffer).

A masked head at query patch (r, c) may attend to key patch (r', c') only when
max(|r - r'|, |c - c'|) <= window // 2 (the Chebyshev ball of the window on the 2-D patch grid).
Allowed positions get 0 and the rest a large finite negative value, so the bias is a plain constant Add
before the softmax: no new operator, any backend runs it.
"""

from __future__ import annotations

import numpy as np

from mait_deploy.config import MaiTConfig


def window_allowed(grid_size: int, window: int) -> np.ndarray:
    """Boolean [N, N] matrix (N = grid_size**2, row-major patches): True where the key lies in the query's window."""
    if grid_size < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    rows, cols = np.divmod(np.arange(grid_size * grid_size), grid_size)
    chebyshev = np.maximum(np.abs(rows[:, None] - rows[None, :]), np.abs(cols[:, None] - cols[None, :]))
    return chebyshev <= window // 2


def locality_bias(grid_size: int, window: int, mask_value: float) -> np.ndarray:
    """Float32 [N, N] additive bias: 0 inside the window, ``mask_value`` outside."""
    allowed = window_allowed(grid_size, window)
    return np.where(allowed, np.float32(0.0), np.float32(mask_value)).astype(np.float32)


def attention_bias(config: MaiTConfig) -> np.ndarray | None:
    """Float32 [num_heads, N, N] bias for a masked self-attention block, or None when nothing is masked.

    Masked heads carry the locality bias; global heads carry zeros, so one Add serves the whole block.
    """
    heads = config.mask.heads(config.num_heads)
    if not heads or not config.mask.blocks(config.depth):
        return None
    n = config.num_patches
    bias = np.zeros((config.num_heads, n, n), dtype=np.float32)
    local = locality_bias(config.grid_size, config.mask.window, config.mask.mask_value)
    for head in heads:
        bias[head] = local
    return bias
