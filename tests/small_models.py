"""Small MaiT models trained for real in seconds, for tests that need a model that has learned something."""

import numpy as np
import pytest
import torch

from mait_deploy.config import MaiTConfig, PreprocessConfig
from mait_deploy.device.data.fashion_mnist import load_split
from mait_deploy.errors import DataError
from mait_deploy.host.model.mait import FASHION_MNIST_LABELS, FASHION_MNIST_MEAN, FASHION_MNIST_STD, MaiT


def small_config(name: str, **overrides: object) -> MaiTConfig:
    """28x28 grey input, patch 4 (49 patches), width 32, 3 blocks of 4 heads."""
    values = dict(name=name, img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depth=3,
                  num_heads=4, mlp_ratio=2.0, labels=FASHION_MNIST_LABELS,
                  preprocess=PreprocessConfig(input_size=28, channels=1, mean=(FASHION_MNIST_MEAN,),
                                              std=(FASHION_MNIST_STD,)))
    values.update(overrides)
    return MaiTConfig(**values)


def small_pyramid_config(name: str, **overrides: object) -> MaiTConfig:
    """A two-stage pyramid: patch 2 (14x14 tokens, width 32, 2 heads), then 7x7 tokens (width 64, 4 heads)."""
    values = dict(backbone="pyramid", patch_size=2, embed_dim=32, num_heads=2, depth=4, stage_depths=(2, 2),
                  stage_dims=(32, 64), stage_heads=(2, 4), init_values=None)
    values.update(overrides)
    return small_config(name, **values)


def train_small(config: MaiTConfig, images_used: int = 12000, epochs: int = 2) -> MaiT:
    """A small MaiT trained for real on Fashion-MNIST in seconds (skips without the training split)."""
    try:
        images, labels = load_split("train")
    except DataError as err:
        pytest.skip(f"needs the Fashion-MNIST training split: {err}")
    torch.manual_seed(0)
    model = MaiT(config)
    x = (torch.from_numpy(images[:images_used].astype(np.float32) / 255.0)[:, None]
         - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    y = torch.from_numpy(labels[:images_used])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x) - 127, 128):
            index = order[start:start + 128]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


