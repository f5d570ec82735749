"""Load and save MaiT checkpoints; import timm CaiT weights.

Our format is a folder with ``model.safetensors`` (weights) and ``config.json`` (architecture, mask
geometry, preprocessing, labels). ``.pt``/``.pth`` files are read only with ``torch.load(weights_only=True)``,
so a pickle that would run code is refused, never executed. The format is decided by what the path is,
each with its own loader, not by trial and error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from mait_deploy._io import atomic_dir, read_json
from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.errors import CheckpointError, ConfigError
from mait_deploy.host.model.mait import MaiT, variant_config

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


def save_checkpoint(model: MaiT, folder: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` atomically (the folder appears complete or not
    at all)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_dir(folder) as temp:
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
        save_file(tensors, str(temp / WEIGHTS_FILE), metadata={"format": "mait", **(metadata or {})})
        config = {"format_version": FORMAT_VERSION, "model": model.config.to_dict()}
        (temp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def read_config(folder: str | os.PathLike[str]) -> MaiTConfig:
    """Parse ``config.json`` of a checkpoint folder."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}")
    data = read_json(path, CheckpointError, "checkpoint config")
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path} has no 'model' section")
    if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses format {data['format_version']}; this version reads up to {FORMAT_VERSION}")
    try:
        return MaiTConfig.from_dict(data["model"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from err


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt): {err}") from err


MAX_STATE_DICT_KEYS = 20_000


def _read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    import warnings

    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warnings would print before our one line
            warnings.simplefilter("ignore")
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or broken files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Unsupported operand" in str(err):
            reason = ("it was saved with a pickle protocol torch's safe loader cannot read; save it again with "
                      "torch.save's default protocol or as .safetensors")
        elif "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it contains Python objects that would run code when loaded; only plain tensors are accepted"
        raise CheckpointError(f"refusing to load {path}: {reason}") from err
    return _tensor_dict(data, path)


def _tensor_dict(data: Any, origin: Path) -> dict[str, torch.Tensor]:
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(data, dict) and wrapper in data and isinstance(data[wrapper], dict):
            data = data[wrapper]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{origin} does not hold a state dict of tensors")
    odd = next((key for key in data if not isinstance(key, str) or not key or len(key) > 512), None)
    if odd is not None:
        raise CheckpointError(f"{origin}: a state dict's keys are parameter names; found {type(odd).__name__} "
                              f"{str(odd)[:60]!r}")
    if len(data) > MAX_STATE_DICT_KEYS:
        raise CheckpointError(f"{origin} holds {len(data)} tensors; a MaiT has a few hundred (limit "
                              f"{MAX_STATE_DICT_KEYS})")
    # DataParallel/DDP checkpoints prefix every key with "module.".
    return {key.removeprefix("module."): value for key, value in data.items()}


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a .safetensors file or a .pt/.pth file (tensors only, never code)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix in (".pt", ".pth", ".bin"):
        return _read_torch_file(path)
    raise CheckpointError(f"unsupported checkpoint file {path.name}: use a .safetensors or .pt/.pth file")


def apply_state_dict(config: MaiTConfig, state: Mapping[str, torch.Tensor], origin: str) -> MaiT:
    """Build a MaiT from ``config`` and load ``state``; any missing/unexpected key or shape mismatch is named.
    Shapes are compared on a model without storage (the meta device) before the real one is allocated."""
    with torch.device("meta"):
        expected = MaiT(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs config {tuple(expected[key].shape)}"
        for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch " + "; ".join(mismatched[:3]) + (" ..." if len(mismatched) > 3 else ""))
    if missing:
        problems.append(f"missing keys {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected keys {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else ""))
    if problems:
        raise CheckpointError(f"{origin} does not match its config ({config.name}): " + " | ".join(problems))
    model = MaiT(config)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval()


def load_checkpoint(path: str | os.PathLike[str], config: MaiTConfig | None = None) -> MaiT:
    """Load a MaiT in eval mode.

    ``path`` is a checkpoint folder (model.safetensors + config.json), or the model.safetensors inside one;
    a bare weights file (.safetensors/.pt) needs ``config`` (e.g. ``variant_config("mait_deit_28")``).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        folder, weights = path, path / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{path} has no {WEIGHTS_FILE}")
    else:
        folder, weights = path.parent, path
    if config is None:
        if not (folder / CONFIG_FILE).is_file():
            raise CheckpointError(f"no {CONFIG_FILE} beside {weights.name}; pass the model variant/config")
        config = read_config(folder)
    return apply_state_dict(config, load_state_dict_file(weights), str(weights))


# ----------------------------------------------------------------------------------------------------------
# timm CaiT import. MaiT keeps timm's parameter names, so the mapping is the identity on the keys; what has to
# be found is the architecture, read from the tensor shapes.

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")
_TOKEN_BLOCK_KEY = re.compile(r"^blocks_token_only\.(\d+)\.")


def cait_config_from_state_dict(state: Mapping[str, torch.Tensor], **overrides: Any) -> MaiTConfig:
    """Infer a MaiT config (talking heads on, default masks) from a timm CaiT state dict's shapes."""
    required = ("patch_embed.proj.weight", "pos_embed", "cls_token", "head.weight", "blocks.0.attn.proj_l.weight",
                "blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"not a timm CaiT state dict: missing {', '.join(missing)}")
    embed_dim, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    tokens = state["pos_embed"].shape[1]
    grid = int(round(tokens**0.5))
    if grid * grid != tokens:
        raise CheckpointError(f"pos_embed has {tokens} tokens, not a square grid")
    depth = 1 + max(int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key)))
    token_depth = len({m.group(1) for key in state if (m := _TOKEN_BLOCK_KEY.match(key))})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    hidden_token = state.get("blocks_token_only.0.mlp.fc1.weight", state["blocks.0.mlp.fc1.weight"]).shape[0]
    values: dict[str, Any] = dict(
        name="mait_from_cait", img_size=grid * patch, patch_size=patch, in_chans=in_chans,
        num_classes=state["head.weight"].shape[0], embed_dim=embed_dim, depth=depth,
        num_heads=state["blocks.0.attn.proj_l.weight"].shape[0], mlp_ratio=hidden / embed_dim,
        depth_token_only=token_depth, mlp_ratio_token_only=hidden_token / embed_dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state, talking_heads=True, mask=MaskConfig(),
        preprocess=PreprocessConfig(input_size=grid * patch, channels=in_chans, interpolation="bicubic"),
    )
    values.update(overrides)
    return MaiTConfig(**values)


def import_timm_cait(source: str | os.PathLike[str] | Mapping[str, torch.Tensor], variant: str | None = None,
                     mask: MaskConfig | None = None) -> MaiT:
    """Load timm CaiT weights into a MaiT of the same dimensions, adding the locality masks.

    ``source`` is a state dict or a .safetensors/.pth file. With ``variant`` (e.g. ``mait_xxs24_224``) the
    weights must fit that architecture (with talking heads on, as in CaiT); otherwise the architecture is
    inferred from the shapes.
    """
    state = dict(source) if isinstance(source, Mapping) else load_state_dict_file(source)
    origin = "timm state dict" if isinstance(source, Mapping) else str(source)
    state = _tensor_dict(state, Path(origin))
    extra = {"mask": mask} if mask is not None else {}
    if variant is not None:
        config = variant_config(variant, talking_heads=True, **extra)
    else:
        config = cait_config_from_state_dict(state, **extra)
    return apply_state_dict(config, state, origin)
