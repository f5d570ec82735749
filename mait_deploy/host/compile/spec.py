"""What a compile is asked for and what it gives back: the target's capabilities, the compile and calibration
options, a plug-in's built artifact and the compile result (the template that uses them: target.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mait_deploy.device.logits import GateResult
from mait_deploy.device.manifest import Manifest, TensorSpec
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.gate import DEFAULT_MAX_DROP
from mait_deploy.host.compile.qdq import METHODS
from mait_deploy.precision import AUTO, FP32, INT8, PRECISIONS, Precision


@dataclass(frozen=True)
class TargetCapabilities:
    precisions: tuple[Precision, ...]
    dynamic_batch: bool
    devices: tuple[str, ...]
    needs_torch_model: bool = False  # converts from PyTorch rather than ONNX (LiteRT)
    default_batch: int | None = None  # None: dynamic
    default_precision: Precision = FP32  # what `compile` builds when no precision is given (measured, see README)
    layer_fallback: bool = False  # INT8 can keep named layers in float (``sensitivity_preset`` ranks them)
    # A build's seconds by precision (the shipped checkpoint, unlisted: a few): orders the jobs longest first.
    typical_build_seconds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationOptions:
    method: str = "minmax"  # minmax | entropy | percentile (target-dependent)
    count: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnsupportedOption(f"unknown calibration method {self.method!r}; use {', '.join(METHODS)}")
        if self.count < 1:
            raise UnsupportedOption(f"the calibration count must be positive, got {self.count}")


@dataclass(frozen=True)
class CompileOptions:
    precision: str = FP32  # a Precision, or AUTO
    batch: int | str | None = None  # None: the target's default (dynamic where it can); "dynamic" asks for it
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    max_accuracy_drop: float = DEFAULT_MAX_DROP
    force: bool = False
    target_options: dict[str, Any] = field(default_factory=dict)  # validated by the target
    # INT8: layers kept in float (sensitivity.py names them); when the gate fails and this is empty, the most
    # sensitive layers are kept in float, 1, 2, 4, ... until it passes (``layer_fallback``).
    float_layers: tuple[str, ...] = ()
    layer_fallback: bool = True
    # The accuracy gate on a fixed sample of this many images first, the full set only where the sample leaves the
    # decision open (gate.py); None: always the full set.
    gate_sample: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "float_layers", tuple(self.float_layers))
        if self.float_layers and self.precision != INT8:
            raise UnsupportedOption("--float-layers applies to int8 only (not to fp32, fp16 or auto)")
        if self.precision not in (*PRECISIONS, AUTO):
            raise UnsupportedOption(f"unknown precision {self.precision!r}; use {', '.join(PRECISIONS)} or auto")
        if self.batch is not None and self.batch != "dynamic" and (
                isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1):
            raise UnsupportedOption(f"batch must be a positive integer or 'dynamic', got {self.batch!r}")
        if self.max_accuracy_drop < 0:
            raise UnsupportedOption(f"--max-accuracy-drop must be >= 0, got {self.max_accuracy_drop}")
        if self.gate_sample is not None and (isinstance(self.gate_sample, bool) or self.gate_sample < 100):
            raise UnsupportedOption(f"--gate-sample must be at least 100 images, got {self.gate_sample}")


@dataclass
class BuiltArtifact:
    """What a plug-in's ``_build`` leaves in the staging folder."""

    artifact: str  # file name in the staging folder
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch: int | str
    runtime_options: dict[str, Any]  # defaults for the device runner (RunnerOptions.extra)
    side_files: list[str] = field(default_factory=list)
    # Side files a device loads instead of the artifact (one or the other, never both): counted once in the size.
    alternative_files: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    hashed: Any = field(default=None, repr=False)  # (artifact, side files) FileEntries once hashed (the template)


@dataclass
class CompileResult:
    """What compile hands to the next stage (deploy's row, the CLI's summary, --precision auto): the bundle's own
    typed manifest and gate, never a re-read of its JSON."""

    bundle: str
    target: str
    precision: str
    manifest: Manifest
    gate: GateResult | None
    seconds: dict[str, float]

    @property
    def size_bytes(self) -> int:
        return self.manifest.size_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "target": self.target, "precision": self.precision,
                "manifest": self.manifest.to_dict(), "gate": self.gate.to_dict() if self.gate else None,
                "seconds": self.seconds}
