"""Shared fixtures. Tests that need torch import it through ``pytest.importorskip`` in their own module."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.shipped import SHIPPED_CALIBRATION, SHIPPED_EVAL_COUNT

# A test's own `import openvino` (importorskip) would load OpenVINO's telemetry, which forks a sender process
# (the "os.fork() ... JAX is multithreaded" warnings); the product imports it through import_openvino, which turns
# it off the same way (tests/backends/test_openvino_target.py checks that on its own).
sys.modules.setdefault("openvino_telemetry", None)


@pytest.fixture
def tiny_config():
    from mait_deploy.config import MaiTConfig, MaskConfig, PreprocessConfig

    return MaiTConfig(name="tiny", img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=2,
                      num_heads=4, init_values=0.5, mask=MaskConfig(window=3),
                      preprocess=PreprocessConfig(input_size=16, channels=1, mean=(0.5,), std=(0.25,)))


@dataclass(frozen=True)
class ShippedBundle:
    folder: Path
    result: Any  # the CompileResult: its gate and manifest


class ShippedBundles(dict):
    """(target, precision) -> the shipped checkpoint's bundle (ShippedBundle), built on first use and shared by
    every test of the session: tests only read them (a test that changes one copies it first)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, key: tuple[str, str]) -> ShippedBundle:
        target, precision = key
        pytest.importorskip("torch")
        from mait_deploy import backends
        from mait_deploy.host.compile.api import compile_model
        from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions

        missing = backends.availability().get(target)
        if missing:
            pytest.skip(f"{target}: {missing}")
        folder = self.root / target / precision
        options = CompileOptions(precision=precision, calibration=CalibrationOptions(count=SHIPPED_CALIBRATION))
        self[key] = ShippedBundle(folder, compile_model(None, target, options, folder, eval_count=SHIPPED_EVAL_COUNT))
        return self[key]

    def of(self, target: str, precisions: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
        """The folder holding ``target``'s bundles (one sub-folder per precision) and precision -> CompileResult."""
        return self.root / target, {precision: self[target, precision].result for precision in precisions}


@pytest.fixture(scope="session")
def shipped_bundles(tmp_path_factory) -> ShippedBundles:
    return ShippedBundles(tmp_path_factory.mktemp("shipped-bundles"))


@pytest.fixture(scope="session")
def ort_fp32_bundle(shipped_bundles) -> Path:
    """The shipped checkpoint as an ONNX Runtime FP32 bundle; tests only read it."""
    return shipped_bundles["onnxruntime", "fp32"].folder


@pytest.fixture(scope="session")
def executorch_bundles(shipped_bundles) -> dict[str, Path]:
    """precision -> the shipped checkpoint as an ExecuTorch bundle, for the slow tests that run them (natively, on
    the boards); tests only read them."""
    pytest.importorskip("executorch.runtime")
    return {precision: shipped_bundles["executorch", precision].folder for precision in ("fp32", "int8")}


@pytest.fixture(autouse=True)
def _fresh_gate_memo():
    """Each test scores its own gates: the compile template remembers gates by artifact bytes within a process
    (host/compile/target.py), and a test may change a runner under the same bytes."""
    import sys

    module = sys.modules.get("mait_deploy.host.compile.target")
    if module is not None:
        module._GATES.clear()
    yield
