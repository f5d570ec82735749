"""Model, mask and preprocessing configuration (plain dataclasses, importable without torch).

The config travels with the weights (checkpoint JSON), inside ONNX metadata and in bundle manifests,
so the device side can preprocess images exactly as the model was trained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from mait_deploy.errors import ConfigError
from mait_deploy.mask_config import (  # noqa: F401  (re-exported: the public config API)
    DEFAULT_MASK_VALUE,
    FP16_MAX,
    MASK_MODES,
    MASK_PATTERNS,
    SCHEDULE_PRESETS,
    MaskConfig,
    _construct,
    _from_mapping,
    _int_tuple,
)

# Sanity bounds on a config read from a file: far above any MaiT/DeiT/CaiT (ViT-H: 1280 wide, 256 tokens).
MAX_EMBED_DIM = 8192
MAX_ATTENTION_BYTES = 1 << 30
CONFIG_LIMITS = {"img_size": 8192, "patch_size": 1024, "in_chans": 64, "num_classes": 1_000_000,
                 "embed_dim": MAX_EMBED_DIM, "depth": 1024, "num_heads": 1024}

BACKBONES = ("cait", "deit", "pyramid")


MIN_CROP_PCT = 0.05  # timm's models use 0.75-1.0


@dataclass(frozen=True)
class PreprocessConfig:
    """How a raw image becomes the model input; applied in numpy by mait_deploy.device.preprocess."""

    input_size: int = 224
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"mean and std need {self.channels} values each")
        if any(s <= 0 for s in self.std):
            raise ConfigError("std values must be positive")
        if self.interpolation not in ("nearest", "bilinear", "bicubic"):
            raise ConfigError(f"interpolation must be nearest, bilinear or bicubic, got {self.interpolation!r}")
        if not MIN_CROP_PCT <= self.crop_pct <= 1.0:  # a tiny one would resize the image to an endless size
            raise ConfigError(f"crop_pct must be from {MIN_CROP_PCT} to 1, got {self.crop_pct}")
        if self.input_size < 1:
            raise ConfigError(f"input_size must be positive, got {self.input_size}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        return _construct(cls, _from_mapping(cls, data, "preprocess config"), "preprocess config")


@dataclass(frozen=True)
class MaiTConfig:
    """The architecture of a MaiT network plus the mask geometry, preprocessing and labels that travel with the
    weights.

    backbone ``deit`` (the paper's: timm's VisionTransformer, the class token - and with ``distilled`` a
    distillation token - inside the token sequence of every block, LayerScale only when ``init_values`` is set)
    or ``cait`` (patch-only self-attention blocks, then ``depth_token_only`` class-attention blocks; LayerScale).
    """

    name: str = "mait"
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 192
    depth: int = 24
    num_heads: int = 4
    mlp_ratio: float = 4.0
    depth_token_only: int | None = None  # None: 2 for cait, 0 for deit
    mlp_ratio_token_only: float = 4.0
    qkv_bias: bool = True
    init_values: float | None = 1e-5  # LayerScale init; None = no LayerScale (deit and pyramid only)
    talking_heads: bool = False
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    mask: MaskConfig = field(default_factory=MaskConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    labels: tuple[str, ...] = ()
    backbone: str = "cait"
    distilled: bool = False
    # pyramid backbone only: blocks, width and heads of each stage; every stage after the first halves the token
    # grid (2x2 token merging). embed_dim/num_heads are the first stage's, depth the sum of the stage depths.
    stage_depths: tuple[int, ...] = ()
    stage_dims: tuple[int, ...] = ()
    stage_heads: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        for name in ("stage_depths", "stage_dims", "stage_heads"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        if self.depth_token_only is None:
            object.__setattr__(self, "depth_token_only", 2 if self.backbone == "cait" else 0)
        for name, limit in CONFIG_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f"{name} must be an integer from 1 to {limit}, got {value!r}")
        for name in ("mlp_ratio", "mlp_ratio_token_only", "init_values", "layer_norm_eps", "drop_path_rate"):
            value = getattr(self, name)
            if value is None and name == "init_values" and self.backbone in ("deit", "pyramid"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("qkv_bias", "talking_heads", "distilled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.name, str):
            raise ConfigError(f"name must be a string, got {self.name!r}")
        if isinstance(self.depth_token_only, bool) or not isinstance(self.depth_token_only, int) \
                or not 0 <= self.depth_token_only <= CONFIG_LIMITS["depth"]:
            raise ConfigError(f"depth_token_only must be an integer from 0 to {CONFIG_LIMITS['depth']}, "
                              f"got {self.depth_token_only!r}")
        if self.backbone == "deit":
            if self.depth_token_only:
                raise ConfigError("the deit backbone has no class-attention blocks: depth_token_only must be 0")
            if self.talking_heads:
                raise ConfigError("talking heads belong to the cait backbone, not deit")
        elif self.distilled:
            raise ConfigError("a distillation token needs the deit backbone")
        if self.backbone == "pyramid":
            self._check_pyramid()
        elif self.stage_depths or self.stage_dims or self.stage_heads:
            raise ConfigError("stage_depths/stage_dims/stage_heads belong to the pyramid backbone, "
                              f"not {self.backbone}")
        if self.talking_heads and self.mask.mode == "multiplicative":
            raise ConfigError("multiplicative masks cannot be combined with talking heads (the head mixing comes "
                              "between the products and the softmax); use additive masks")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        # Checked before anything is built: a small config must not make the model allocate gigabytes.
        bias_bytes = max(heads * (grid * grid + 2) ** 2 * 4
                         for heads, grid in zip(self.block_heads(), self.block_grids()))
        if bias_bytes > MAX_ATTENTION_BYTES:
            raise ConfigError(f"config too large: {self.num_patches} tokens x {self.num_heads} heads is "
                              f"{bias_bytes / 2**30:.1f} GiB of attention per image (limit "
                              f"{MAX_ATTENTION_BYTES / 2**30:.0f} GiB)")
        if self.labels and len(self.labels) != self.num_classes:
            raise ConfigError(f"{len(self.labels)} labels given for {self.num_classes} classes")
        if self.preprocess.channels != self.in_chans:
            raise ConfigError(f"preprocess has {self.preprocess.channels} channels, the model {self.in_chans}")
        if self.preprocess.input_size != self.img_size:
            raise ConfigError(f"preprocess input_size {self.preprocess.input_size} != img_size {self.img_size}")
        # Resolve now so a bad head/block index fails at config time, not deep inside a forward pass.
        self.layer_heads()

    def _check_pyramid(self) -> None:
        stages = len(self.stage_depths)
        if not stages or len(self.stage_dims) != stages or len(self.stage_heads) != stages:
            raise ConfigError("the pyramid backbone needs stage_depths, stage_dims and stage_heads of one length each")
        if stages > 8 or any(not 1 <= value <= CONFIG_LIMITS[limit] for values, limit in
                             ((self.stage_depths, "depth"), (self.stage_dims, "embed_dim"),
                              (self.stage_heads, "num_heads")) for value in values):
            raise ConfigError("pyramid stages out of range: at most 8 stages, each with 1 or more blocks, width "
                              "and heads within the config limits")
        if self.depth != sum(self.stage_depths):
            raise ConfigError(f"depth {self.depth} must be the sum of stage_depths ({sum(self.stage_depths)})")
        if (self.embed_dim, self.num_heads) != (self.stage_dims[0], self.stage_heads[0]):
            raise ConfigError("embed_dim and num_heads must be the first stage's (stage_dims[0], stage_heads[0])")
        for dim, heads in zip(self.stage_dims, self.stage_heads):
            if dim % heads:
                raise ConfigError(f"stage width {dim} is not divisible by its {heads} heads")
        if self.grid_size % (1 << (stages - 1)):
            raise ConfigError(f"a {self.grid_size}x{self.grid_size} patch grid cannot be halved {stages - 1} times")
        if self.depth_token_only or self.talking_heads:
            raise ConfigError("the pyramid backbone has no class-attention blocks or talking heads")


    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches in the self-attention blocks: class (+ distillation) token for deit."""
        return (1 + int(self.distilled)) if self.backbone == "deit" else 0

    @property
    def num_stages(self) -> int:
        return len(self.stage_depths) if self.backbone == "pyramid" else 1

    def block_stages(self) -> tuple[int, ...]:
        """The stage of every self-attention block (all 0 for the monolithic backbones)."""
        if self.backbone != "pyramid":
            return (0,) * self.depth
        return tuple(stage for stage, blocks in enumerate(self.stage_depths) for _ in range(blocks))

    def stage_grid(self, stage: int) -> int:
        """The side of the token grid in ``stage`` (each pyramid stage halves it)."""
        return self.grid_size >> stage

    def block_grids(self) -> tuple[int, ...]:
        """The token grid side of every self-attention block."""
        return tuple(self.stage_grid(stage) for stage in self.block_stages())

    def _per_block(self, per_stage: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(per_stage[stage] for stage in self.block_stages())

    def block_heads(self) -> tuple[int, ...]:
        """The head count of every self-attention block."""
        return self._per_block(self.stage_heads if self.backbone == "pyramid" else (self.num_heads,))

    def block_dims(self) -> tuple[int, ...]:
        """The width of every self-attention block."""
        return self._per_block(self.stage_dims if self.backbone == "pyramid" else (self.embed_dim,))

    @property
    def feature_dim(self) -> int:
        """The width the classifier head sees."""
        return self.stage_dims[-1] if self.backbone == "pyramid" else self.embed_dim

    @property
    def num_tokens(self) -> int:
        """Tokens a self-attention block sees (the size of its attention matrix)."""
        return self.num_patches + self.num_prefix_tokens

    def layer_heads(self) -> tuple[tuple[int, ...], ...]:
        """The masked heads of every self-attention block."""
        if self.backbone == "pyramid":
            return self.mask.pyramid_layer_heads(self.stage_depths, self.stage_heads)
        return self.mask.layer_heads(self.depth, self.num_heads)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_chans, self.img_size, self.img_size)

    def label_names(self) -> tuple[str, ...]:
        return self.labels or tuple(str(i) for i in range(self.num_classes))

    def replace(self, **changes: Any) -> "MaiTConfig":
        return dataclasses.replace(self, **changes)

    def unmasked(self) -> "MaiTConfig":
        return self.replace(mask=dataclasses.replace(self.mask, enabled=False))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["mask"] = self.mask.to_dict()
        data["preprocess"] = self.preprocess.to_dict()
        data["labels"] = list(self.labels)
        for name in ("stage_depths", "stage_dims", "stage_heads"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MaiTConfig":
        values = _from_mapping(cls, data, "model config")
        if "mask" in values:
            values["mask"] = MaskConfig.from_dict(values["mask"])
        if "preprocess" in values:
            values["preprocess"] = PreprocessConfig.from_dict(values["preprocess"])
        return _construct(cls, values, "model config")
