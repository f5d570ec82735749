"""Facts about the shipped default checkpoint that tests compare against (read from it, not hard-coded)."""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# How every test builds the shipped checkpoint's bundles (conftest.py: shipped_bundles): one calibration and gate
# size, so one bundle serves every test that reads it, in the default and the slow suite alike.
SHIPPED_CALIBRATION = 128
SHIPPED_EVAL_COUNT = 1000


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


def golden_arrays(bundle) -> dict:
    """A bundle's golden arrays by name (``images`` or ``inputs``, ``logits``, ``reference_logits``), read as the
    device reads them."""
    from mait_deploy.device.bundle import load_golden
    from mait_deploy.device.manifest import read_manifest

    golden = load_golden(bundle, read_manifest(bundle))
    return {golden.kind: golden.samples, "logits": golden.logits, "reference_logits": golden.reference_logits}


def shift_golden_logits(bundle, by: float) -> None:
    """Move a bundle's golden logits by ``by`` and re-hash the file, as if recorded so: golden outputs this
    device cannot meet, with every hash intact."""
    import json

    import numpy as np

    from mait_deploy._io import sha256_file
    from mait_deploy.device.bundle import load_golden
    from mait_deploy.device.manifest import MANIFEST_FILE, read_manifest

    golden = load_golden(bundle, read_manifest(bundle))
    golden.logits = (golden.logits + np.float32(by)).astype(np.float32)
    path, _ = golden.write(bundle)
    data = json.loads((bundle / MANIFEST_FILE).read_text())
    data["golden"]["sha256"] = sha256_file(path)
    (bundle / MANIFEST_FILE).write_text(json.dumps(data))


def edited_copy(bundle: Path, folder: Path, change=None, artifact: bytes | None = None) -> Path:
    """A copy of ``bundle`` with its manifest changed (and its artifact replaced and rehashed); without either, an
    exact copy."""
    import hashlib
    import json
    import shutil

    shutil.copytree(bundle, folder)
    if change is None and artifact is None:
        return folder
    data = json.loads((folder / "manifest.json").read_text())
    if artifact is not None:
        (folder / data["artifact"]["path"]).write_bytes(artifact)
        data["artifact"].update(sha256=hashlib.sha256(artifact).hexdigest(), bytes=len(artifact))
    if change:
        change(data)
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder
