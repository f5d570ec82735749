"""The MaiT model. ``config`` and ``masks`` need only numpy; ``mait``, ``checkpoint`` and ``stats`` need torch."""

from .config import MaiTConfig, MaskConfig, PreprocessConfig

__all__ = ["MaiTConfig", "MaskConfig", "PreprocessConfig"]
