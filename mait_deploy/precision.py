"""The precisions a bundle can be built in: one definition for compile, deploy, compare and the recommendation."""

from __future__ import annotations

from typing import Iterable, Literal

from mait_deploy.errors import UnsupportedOption

Precision = Literal["fp32", "fp16", "bf16", "int8"]
FP32: Precision = "fp32"
FP16: Precision = "fp16"
BF16: Precision = "bf16"  # where the device computes in bfloat16 (AVX512_BF16/AMX, Armv8.6): Target.hardware_lacks
INT8: Precision = "int8"
PRECISIONS: tuple[Precision, ...] = (FP32, FP16, BF16, INT8)
# What every target builds anywhere; BF16 needs hardware and a runtime that uses it.
PORTABLE_PRECISIONS: tuple[Precision, ...] = (FP32, FP16, INT8)
AUTO = "auto"  # compile only: build each, keep the fastest that passes (recommendation.py)


def check_precisions(values: Iterable[str], what: str = "precision(s)") -> tuple[Precision, ...]:
    """``values`` as a non-empty tuple of known precisions, or one UnsupportedOption naming the unknown ones."""
    values = tuple(values)
    unknown = [value for value in values if value not in PRECISIONS]
    if unknown or not values:
        raise UnsupportedOption(f"unknown {what} {', '.join(map(str, unknown)) or '(none)'}; use "
                                f"{', '.join(PRECISIONS)}")
    return values  # type: ignore[return-value]
