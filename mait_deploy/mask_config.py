"""The mask schedule of a MaiT: which heads of which blocks see only a local window, and how the mask is
applied (plain dataclass, importable without torch; ``mait_deploy.config`` re-exports it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from mait_deploy.errors import ConfigError

# -1e4 is finite in FP16 (max 65504), survives onnx/onnxsim/OpenVINO/LiteRT unchanged, and exp(-1e4) is
# exactly 0 in FP32 and FP16, so masked keys get zero weight without the NaNs that -inf gives.
DEFAULT_MASK_VALUE = -1.0e4
FP16_MAX = 65504.0


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
                raise ConfigError("mask window must be an odd integer or two odd integers [rows, cols], "
                                  f"got {window!r}")
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

    def pyramid_layer_heads(self, stage_depths: tuple[int, ...],
                            stage_heads: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """The masked heads of every block of a pyramid (stages of ``stage_depths`` blocks with ``stage_heads``
        heads). Presets follow the resolution: ``mixed`` masks every head of the first, highest-resolution stage,
        one head of the second and none after; ``uniform:K`` K heads of every block; an explicit list is per
        block and checked against that block's stage."""
        depth = sum(stage_depths)
        block_heads = [heads for heads, blocks in zip(stage_heads, stage_depths) for _ in range(blocks)]
        if not self.enabled or self.schedule == "none":
            return ((),) * depth
        if self.schedule == "mixed":
            per_stage = [tuple(range(heads)) if stage == 0 else (0,) if stage == 1 else ()
                         for stage, heads in enumerate(stage_heads)]
            return tuple(per_stage[stage] for stage, blocks in enumerate(stage_depths) for _ in range(blocks))
        if isinstance(self.schedule, str):
            _check_preset(self.schedule)
            k = int(self.schedule.partition(":")[2])
            if k > min(stage_heads):
                raise ConfigError(f"mask schedule {self.schedule!r} masks {k} heads, a stage has {min(stage_heads)}")
            return (tuple(range(k)),) * depth
        if self.schedule is None:
            blocks = set(self.blocks(depth))
            return tuple(self.heads(heads) if block in blocks else () for block, heads in enumerate(block_heads))
        if len(self.schedule) != depth:
            raise ConfigError(f"mask schedule lists {len(self.schedule)} blocks, the model has {depth}")
        for block, (heads, count) in enumerate(zip(self.schedule, block_heads)):
            bad = [h for h in heads if not 0 <= h < count]
            if bad:
                raise ConfigError(f"mask schedule heads {bad} of block {block} out of range for its {count} heads")
        return tuple(tuple(sorted(set(heads))) for heads in self.schedule)

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
