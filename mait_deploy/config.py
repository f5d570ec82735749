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

# -1e4 is finite in FP16 (max 65504), survives onnx/onnxsim/OpenVINO/LiteRT unchanged, and exp(-1e4) is
# exactly 0 in FP32 and FP16, so masked keys get zero weight without the NaNs that -inf gives.
DEFAULT_MASK_VALUE = -1.0e4
FP16_MAX = 65504.0
# Sanity bounds on a config read from a file: far above any MaiT/DeiT/CaiT (ViT-H: 1280 wide, 256 tokens).
MAX_EMBED_DIM = 8192
MAX_ATTENTION_BYTES = 1 << 30
CONFIG_LIMITS = {"img_size": 8192, "patch_size": 1024, "in_chans": 64, "num_classes": 1_000_000,
                 "embed_dim": MAX_EMBED_DIM, "depth": 1024, "num_heads": 1024}


def _from_mapping(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Keep only known fields of dataclass ``cls``; unknown keys are an error, not silently dropped."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{what} has unknown keys: {', '.join(unknown)}")
    return dict(data)


def _construct(cls: type, values: dict[str, Any], what: str) -> Any:
    """``cls(**values)``; a field of the wrong type (text for a number, a number for a list...) is a ConfigError."""
    try:
        return cls(**values)
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(f"invalid {what}: {err}") from err


MASK_MODES = ("additive", "multiplicative")
MASK_PATTERNS = ("window", "random")
BACKBONES = ("cait", "deit")
SCHEDULE_PRESETS = ("uniform:K", "mixed", "none")


def _odd_side(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= 2 * 8192 and value % 2 == 1


@dataclass(frozen=True)
class MaskConfig:
    """Which attention heads of which blocks see only a local window of patches, and how the mask is applied.

    mode: ``additive`` adds ``mask_value`` (-1e4) to the scaled products outside the window (a hard mask: those
      keys get zero weight); ``multiplicative`` is the paper's Eq. 2, Softmax((M * QK^T) / sqrt(d)) with a binary
      M, so a masked-out key still gets weight e^0/Z and the head can bypass locality.
    window: odd side of the window on the patch grid: an int (square, 3 = Chebyshev radius 1) or [rows, cols].
    schedule: the masked heads per self-attention block: ``"uniform:K"`` (heads 0..K-1 in every block),
      ``"mixed"`` (all heads in the first third of the blocks, one head in the middle third, none in the last),
      ``"none"``, or an explicit list with one list of head indices per block. None = the legacy fields below.
    masked_heads / masked_blocks: the legacy uniform schedule (None = the first half of the heads / every block).
    pattern: ``window`` or ``random``: a fixed random pattern (``seed``) keeping as many keys per query as the
      window does (the paper's control experiment).
    enabled: False gives the identical network with every head global (the unmasked baseline).
    Class and distillation tokens attend to, and are attended by, every token in every mode.
    """

    window: int | tuple[int, int] = 3
    masked_heads: tuple[int, ...] | None = None
    masked_blocks: tuple[int, ...] | None = None
    mask_value: float = DEFAULT_MASK_VALUE
    enabled: bool = True
    mode: str = "additive"
    schedule: str | tuple[tuple[int, ...], ...] | None = None
    pattern: str = "window"
    seed: int = 0

    def __post_init__(self) -> None:
        window = self.window
        if isinstance(window, (list, tuple)):
            if len(window) != 2 or not all(_odd_side(side) for side in window):
                raise ConfigError(f"mask window must be an odd integer or two odd integers [rows, cols], got {window!r}")
            window = int(window[0]) if window[0] == window[1] else (int(window[0]), int(window[1]))
            object.__setattr__(self, "window", window)
        elif not _odd_side(window):
            raise ConfigError(f"mask window must be a positive odd integer, got {window!r}")
        if isinstance(self.mask_value, bool) or not isinstance(self.mask_value, (int, float)) \
                or not math.isfinite(self.mask_value) or self.mask_value >= 0 or self.mask_value < -FP16_MAX:
            raise ConfigError(
                f"mask_value must be finite, negative and representable in FP16 (>= -{FP16_MAX:g}), "
                f"got {self.mask_value!r}"
            )
        if self.mode not in MASK_MODES:
            raise ConfigError(f"mask mode must be one of {', '.join(MASK_MODES)}, got {self.mode!r}")
        if self.pattern not in MASK_PATTERNS:
            raise ConfigError(f"mask pattern must be one of {', '.join(MASK_PATTERNS)}, got {self.pattern!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"mask seed must be an integer from 0 to 2**32-1, got {self.seed!r}")
        for name in ("masked_heads", "masked_blocks"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _int_tuple(value, f"mask {name}"))
        schedule = self.schedule
        if schedule is not None:
            if self.masked_heads is not None or self.masked_blocks is not None:
                raise ConfigError("give the mask schedule or masked_heads/masked_blocks, not both")
            if isinstance(schedule, str):
                _check_preset(schedule)  # ranges are checked against the model
            elif isinstance(schedule, (list, tuple)):
                object.__setattr__(self, "schedule", tuple(_int_tuple(heads, "mask schedule entry")
                                                           for heads in schedule))
            else:
                raise ConfigError(f"mask schedule must be a preset ({', '.join(SCHEDULE_PRESETS)}) or a list of "
                                  f"head lists, got {schedule!r}")

    @property
    def window_shape(self) -> tuple[int, int]:
        """(rows, cols) of the window on the patch grid."""
        return (self.window, self.window) if isinstance(self.window, int) else self.window

    @property
    def window_label(self) -> str:
        rows, cols = self.window_shape
        return f"{rows}x{cols}"

    def layer_heads(self, depth: int, num_heads: int) -> tuple[tuple[int, ...], ...]:
        """The masked head indices of every self-attention block (an empty tuple = a global block)."""
        if not self.enabled:
            return ((),) * depth
        if self.schedule is None:
            heads, blocks = self.heads(num_heads), set(self.blocks(depth))
            return tuple(heads if block in blocks else () for block in range(depth))
        if isinstance(self.schedule, str):
            return _preset_heads(self.schedule, depth, num_heads)
        if len(self.schedule) != depth:
            raise ConfigError(f"mask schedule lists {len(self.schedule)} blocks, the model has {depth}")
        result = []
        for heads in self.schedule:
            bad = [h for h in heads if not 0 <= h < num_heads]
            if bad:
                raise ConfigError(f"mask schedule heads {bad} out of range for {num_heads} heads")
            result.append(tuple(sorted(set(heads))))
        return tuple(result)

    def heads(self, num_heads: int) -> tuple[int, ...]:
        """The legacy uniform schedule's masked heads (see ``layer_heads`` for the general case)."""
        if not self.enabled:
            return ()
        heads = tuple(range(num_heads // 2)) if self.masked_heads is None else self.masked_heads
        bad = [h for h in heads if not 0 <= h < num_heads]
        if bad:
            raise ConfigError(f"masked_heads {bad} out of range for {num_heads} heads")
        return tuple(sorted(set(heads)))

    def blocks(self, depth: int) -> tuple[int, ...]:
        """The legacy uniform schedule's masked blocks (see ``layer_heads`` for the general case)."""
        if not self.enabled:
            return ()
        blocks = tuple(range(depth)) if self.masked_blocks is None else self.masked_blocks
        bad = [b for b in blocks if not 0 <= b < depth]
        if bad:
            raise ConfigError(f"masked_blocks {bad} out of range for depth {depth}")
        return tuple(sorted(set(blocks)))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("masked_heads", "masked_blocks"):
            if data[name] is not None:
                data[name] = list(data[name])
        if isinstance(self.window, tuple):
            data["window"] = list(self.window)
        if isinstance(self.schedule, tuple):
            data["schedule"] = [list(heads) for heads in self.schedule]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MaskConfig":
        return _construct(cls, _from_mapping(cls, data, "mask config"), "mask config")


def _int_tuple(values: Any, what: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) \
            or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ConfigError(f"{what} must be a list of integers, got {values!r}")
    return tuple(int(v) for v in values)


def _check_preset(preset: str) -> None:
    kind, _, count = preset.partition(":")
    if preset not in ("none", "mixed") and not (kind == "uniform" and count.isdigit() and len(count) <= 6):
        raise ConfigError(f"unknown mask schedule {preset!r}; use {', '.join(SCHEDULE_PRESETS)} or a list per block")


def _preset_heads(preset: str, depth: int, num_heads: int) -> tuple[tuple[int, ...], ...]:
    """Expand a schedule preset (``uniform:K``, ``mixed``, ``none``) for a model's depth and heads."""
    if preset == "none":
        return ((),) * depth
    if preset == "mixed":
        first, second = round(depth / 3), round(2 * depth / 3)
        return tuple(tuple(range(num_heads)) if block < first else (0,) if block < second else ()
                     for block in range(depth))
    kind, _, count = preset.partition(":")
    if kind == "uniform" and count.isdigit():
        k = int(count)
        if k > num_heads:
            raise ConfigError(f"mask schedule {preset!r} masks {k} heads, the model has {num_heads}")
        return (tuple(range(k)),) * depth
    raise ConfigError(f"unknown mask schedule {preset!r}; use {', '.join(SCHEDULE_PRESETS)} or a list per block")


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
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
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
    init_values: float | None = 1e-5  # LayerScale init; None = no LayerScale (deit only)
    talking_heads: bool = False
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0
    mask: MaskConfig = field(default_factory=MaskConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    labels: tuple[str, ...] = ()
    backbone: str = "cait"
    distilled: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.depth_token_only is None:
            object.__setattr__(self, "depth_token_only", 2 if self.backbone == "cait" else 0)
        for name, limit in CONFIG_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f"{name} must be an integer from 1 to {limit}, got {value!r}")
        for name in ("mlp_ratio", "mlp_ratio_token_only", "init_values", "layer_norm_eps", "drop_path_rate"):
            value = getattr(self, name)
            if value is None and name == "init_values" and self.backbone == "deit":
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
        if self.talking_heads and self.mask.mode == "multiplicative":
            raise ConfigError("multiplicative masks cannot be combined with talking heads (the head mixing comes "
                              "between the products and the softmax); use additive masks")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        # Checked before anything is built: a small config must not make the model allocate gigabytes.
        bias_bytes = self.num_heads * (self.num_patches + 2) ** 2 * 4
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
        self.mask.layer_heads(self.depth, self.num_heads)


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
    def num_tokens(self) -> int:
        """Tokens a self-attention block sees (the size of its attention matrix)."""
        return self.num_patches + self.num_prefix_tokens

    def layer_heads(self) -> tuple[tuple[int, ...], ...]:
        """The masked heads of every self-attention block."""
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
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MaiTConfig":
        values = _from_mapping(cls, data, "model config")
        if "mask" in values:
            values["mask"] = MaskConfig.from_dict(values["mask"])
        if "preprocess" in values:
            values["preprocess"] = PreprocessConfig.from_dict(values["preprocess"])
        return _construct(cls, values, "model config")