"""Named trained weights (``arch.tag``) shipped with the package, and checkpoint resolution for the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mait_deploy._assets import ASSETS
from mait_deploy.errors import CheckpointError


@dataclass(frozen=True)
class PretrainedWeights:
    name: str  # arch.tag, as timm names its pretrained configs
    folder: Path
    description: str


PRETRAINED: dict[str, PretrainedWeights] = {
    "mait_deit_28.fmnist": PretrainedWeights(
        name="mait_deit_28.fmnist",
        folder=ASSETS / "mait_deit_28.fmnist",
        description="the paper's MaiT (deit backbone, multiplicative 3x3 masks, one masked head per block) trained "
                    "on Fashion-MNIST (28x28 grey, 10 classes); see training/RESULTS.md",
    ),
    "mait_demo_28.fmnist": PretrainedWeights(
        name="mait_demo_28.fmnist",
        folder=ASSETS / "mait_demo_28.fmnist",
        description="the first release's CaiT-backbone MaiT (additive masks) trained on Fashion-MNIST; "
                    "see training/RESULTS.md",
    ),
}
DEFAULT_CHECKPOINT = "mait_deit_28.fmnist"  # the paper's MaiT, 91.46% (training/RESULTS.md)


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """A checkpoint path from a path, a shipped weights name, or None (the shipped default)."""
    if checkpoint is None:
        checkpoint = DEFAULT_CHECKPOINT
    if isinstance(checkpoint, str) and checkpoint in PRETRAINED:
        folder = PRETRAINED[checkpoint].folder
        if not folder.is_dir():
            raise CheckpointError(f"shipped checkpoint {checkpoint} is missing from the installation ({folder})")
        return folder
    path = Path(checkpoint)
    if not path.exists():
        names = ", ".join(PRETRAINED)
        raise CheckpointError(f"checkpoint not found: {checkpoint} (not a path, nor a shipped name: {names})")
    return path
