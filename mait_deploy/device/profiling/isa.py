"""The CPU's instruction set as data: which integer and reduced-precision paths a runtime can take here.

INT8 accuracy and speed depend on it. x86 without VNNI multiplies uint8 x int8 with VPMADDUBSW, whose int16
pair sums saturate, so the same u8s8 model scores differently on a VNNI CPU and on an AVX2-only one; Arm's dot
product instructions (asimddp) accumulate in int32. Every manifest, gate result and profile records this, so a
user can see why a bundle gated on one machine behaves differently on another. Stdlib only (device side).
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

# Flags that change what an int8/bf16/fp16 kernel computes or how fast: x86 (Linux names) and Arm (Features).
RELEVANT_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "avx512_fp16", "amx_int8", "amx_bf16", "amx_tile",
    "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2",
)
INT8_CLASSES = ("x86-amx", "x86-vnni", "x86-avx512", "x86-avx2", "x86", "arm64-dotprod", "arm64", "other")


def _cpuinfo(root: str | Path) -> str:
    try:
        return (Path(root) / "proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(CPU model, flags) from /proc/cpuinfo text (x86 'flags', Arm 'Features')."""
    model = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            model = match.group(1).strip()
            break
    match = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    return model, set(match.group(1).split()) if match else set()


def int8_class(machine: str, flags: set[str]) -> str:
    """The class of int8 arithmetic this CPU runs: what decides whether u8s8 kernels saturate."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "i386"):
        if "amx_int8" in flags:
            return "x86-amx"
        if "avx512_vnni" in flags or "avx_vnni" in flags:
            return "x86-vnni"
        if "avx512bw" in flags:
            return "x86-avx512"
        if "avx2" in flags:
            return "x86-avx2"
        return "x86"
    if machine in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64"
    return "other"


def cpu_isa(root: str | Path = "/") -> dict[str, object]:
    """The CPU model, the relevant flags and the int8 class, as the CPU reports them. Whether a runtime's int8
    kernels really saturate is a runtime's own functional probe (ONNX Runtime: ``u8s8_exact`` in its runner):
    emulators and hypervisors can report flags the kernels do not get."""
    model, flags = parse_cpuinfo(_cpuinfo(root))
    machine = platform.machine()
    cls = int8_class(machine, flags)
    return {"model": model or "unknown", "machine": machine,
            "flags": sorted(flags & set(RELEVANT_FLAGS)), "int8_class": cls,
            "bf16": bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})}
