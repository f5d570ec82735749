"""Numerical parity of an exported artifact against the PyTorch model: its own public step, run on every export."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from mait_deploy.config import MaiTConfig
from mait_deploy.device.data.builtin import load_sample
from mait_deploy.device.logits import Tolerance, compare_logits
from mait_deploy.device.preprocess import preprocess_uint8_batch
from mait_deploy.errors import ValidationError
from mait_deploy.precision import FP16, FP32


def parity_tolerance(precision: str) -> Tolerance:
    """How close an export must be to PyTorch: FP32 to float rounding, FP16 to its 10-bit mantissa."""
    if precision == FP32:
        return Tolerance(max_abs_diff=1e-4, min_top1_agreement=1.0)
    if precision == FP16:
        return Tolerance(max_abs_diff=1e-2, min_top1_agreement=0.995)
    raise ValueError(f"no default parity tolerance for precision {precision!r}")


@dataclass
class ParityReport:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    real_images: int
    random_inputs: int
    data: str
    tolerance: dict[str, float]
    passed: bool
    non_finite_outputs: int = 0
    batch_sizes_checked: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"max |diff| {self.max_abs_diff:.3g} (limit {self.tolerance['max_abs_diff']:g}), "
                f"mean {self.mean_abs_diff:.3g}, top-1 agreement {self.top1_agreement * 100:.2f}% "
                f"(limit {self.tolerance['min_top1_agreement'] * 100:.1f}%) on {self.real_images} real images + "
                f"{self.random_inputs} random inputs")


@dataclass(frozen=True)
class ReferenceInputs:
    inputs: np.ndarray  # float32 [N, C, H, W], preprocessed
    real: int
    random: int
    data: str


def reference_inputs(config: MaiTConfig, real: int = 256, random: int = 32, seed: int = 0) -> ReferenceInputs:
    """Real Fashion-MNIST test images (the shipped sample, preprocessed for this model) plus random inputs."""

    rng = np.random.default_rng(seed)
    parts, origin = [], "random"
    if real:
        sample = load_sample("test")
        index = np.sort(rng.choice(len(sample), size=min(real, len(sample)), replace=False))
        parts.append(preprocess_uint8_batch(sample.images[index], config.preprocess))
        origin = f"{sample.origin} ({len(index)} drawn, seed {seed})"
    if random:
        parts.append(rng.standard_normal((random, *config.input_shape)).astype(np.float32))
    return ReferenceInputs(np.concatenate(parts), real=len(parts[0]) if real else 0, random=random, data=origin)


def torch_logits(model: Any, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            outputs.append(model(torch.from_numpy(inputs[start:start + batch])).float().numpy())
    return np.concatenate(outputs)


def parity_report(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance,
                  refs: ReferenceInputs) -> ParityReport:
    """Parity numbers of candidate vs reference logits; ``passed`` says whether the tolerance holds."""
    comparison = compare_logits(candidate, reference)
    return ParityReport(
        max_abs_diff=comparison.max_abs_diff, mean_abs_diff=comparison.mean_abs_diff,
        top1_agreement=comparison.top1_agreement, real_images=refs.real, random_inputs=refs.random, data=refs.data,
        tolerance=tolerance.to_dict(), passed=comparison.within(tolerance), non_finite_outputs=comparison.non_finite,
    )


def verify_outputs(predict: Callable[[np.ndarray], np.ndarray], reference_model: Any, precision: str = "fp32",
                   tolerance: Tolerance | None = None, refs: ReferenceInputs | None = None,
                   batch: int = 32, what: str = "artifact") -> ParityReport:
    """Compare ``predict`` (any backend, batch in -> logits out) with the PyTorch model on the same inputs.

    Raises ValidationError with the numbers when the tolerance does not hold.
    """
    started = time.perf_counter()
    tolerance = tolerance or parity_tolerance(precision)
    refs = refs or reference_inputs(reference_model.config)
    expected = torch_logits(reference_model, refs.inputs)
    got = np.concatenate([np.asarray(predict(refs.inputs[i:i + batch]), dtype=np.float32)
                          for i in range(0, len(refs.inputs), batch)])
    report = parity_report(expected, got, tolerance, refs)
    report.seconds = round(time.perf_counter() - started, 3)
    if not report.passed:
        detail = f"; {report.non_finite_outputs} outputs are NaN/Inf" if report.non_finite_outputs else ""
        raise ValidationError(f"{what} does not match PyTorch: {report.summary()}{detail}")
    return report


def ort_predictor(onnx_path: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def fixed_batch(predict: Callable[[np.ndarray], np.ndarray], size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Adapt a fixed-batch predictor to any number of inputs: chunks of ``size``, the last one zero-padded."""

    def run(inputs: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(inputs), size):
            chunk = inputs[start:start + size]
            count = len(chunk)
            if count < size:
                chunk = np.concatenate([chunk, np.zeros((size - count, *chunk.shape[1:]), chunk.dtype)])
            outputs.append(np.asarray(predict(chunk))[:count])
        return np.concatenate(outputs)

    return run


def verify_onnx(onnx_path: str, reference_model: Any, precision: str = "fp32",
                tolerance: Tolerance | None = None, refs: ReferenceInputs | None = None,
                batch: int | None = None) -> ParityReport:
    """ONNX Runtime vs PyTorch on real images plus random inputs.

    ``batch`` None means the graph has a dynamic batch axis: batches of 32, and 1, 3 and 8 are checked too.
    A fixed batch runs in chunks of exactly that size.
    """
    predict = ort_predictor(onnx_path)
    refs = refs or reference_inputs(reference_model.config)
    if batch is not None:
        report = verify_outputs(fixed_batch(predict, batch), reference_model, precision, tolerance, refs,
                                batch=batch, what=str(onnx_path))
        report.batch_sizes_checked = [batch]
        return report
    report = verify_outputs(predict, reference_model, precision, tolerance, refs, batch=32, what=str(onnx_path))
    expected = torch_logits(reference_model, refs.inputs[:8])
    for size in (1, 3, 8):
        got = np.asarray(predict(refs.inputs[:size]))
        if got.shape != (size, expected.shape[1]):
            raise ValidationError(f"{onnx_path}: batch {size} gave output shape {got.shape}, "
                                  f"expected {(size, expected.shape[1])}")
        if float(np.abs(got - expected[:size]).max()) > report.tolerance["max_abs_diff"]:
            raise ValidationError(f"{onnx_path}: batch {size} disagrees with PyTorch")
    report.batch_sizes_checked = [1, 3, 8, 32]
    return report
