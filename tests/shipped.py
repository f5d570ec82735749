"""Facts about the shipped default checkpoint that tests compare against (read from it, not hard-coded)."""

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Shipped:
    name: str  # the variant name in its config
    masked_blocks: int  # blocks that use a mask constant
    patterns: int  # mask constants in the exported graph
    params: int
    layer_heads: tuple[tuple[int, ...], ...]


@lru_cache(maxsize=None)
def default_checkpoint() -> Shipped:
    from mait_deploy.host.model.checkpoint import load_checkpoint
    from mait_deploy.host.model.zoo import resolve_checkpoint

    model = load_checkpoint(resolve_checkpoint(None))
    config = model.config
    return Shipped(name=config.name, masked_blocks=sum(1 for heads in config.layer_heads() if heads),
                   patterns=len(model.mask_names), params=sum(p.numel() for p in model.parameters()),
                   layer_heads=config.layer_heads())
