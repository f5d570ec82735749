"""Shared fixtures. Tests that need torch import it through ``pytest.importorskip`` in their own module."""

from __future__ import annotations

import sys

import pytest

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


@pytest.fixture(scope="session")
def ort_fp32_bundle(tmp_path_factory):
    """The shipped checkpoint as an ONNX Runtime FP32 bundle (gate on 200 images), built once; tests only read it."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from mait_deploy.host.compile.api import compile_model
    from mait_deploy.host.compile.target import CompileOptions

    folder = tmp_path_factory.mktemp("ort-fp32") / "bundle"
    compile_model(None, "onnxruntime", CompileOptions(precision="fp32"), folder, eval_count=200)
    return folder


@pytest.fixture(scope="session")
def executorch_bundles(tmp_path_factory):
    """precision -> the shipped checkpoint as an ExecuTorch bundle (FP32, INT8 on 128 calibration images; gate on
    200 images), built once for the slow tests that run them (natively, on the boards); tests only read them."""
    pytest.importorskip("torch")
    pytest.importorskip("executorch.runtime")
    from mait_deploy.host.compile.api import compile_model
    from mait_deploy.host.compile.target import CalibrationOptions, CompileOptions

    root = tmp_path_factory.mktemp("executorch-bundles")
    for precision in ("fp32", "int8"):
        options = CompileOptions(precision=precision, calibration=CalibrationOptions(count=128))
        compile_model(None, "executorch", options, root / f"executorch-{precision}", eval_count=200)
    return {precision: root / f"executorch-{precision}" for precision in ("fp32", "int8")}


@pytest.fixture(autouse=True)
def _fresh_gate_memo():
    """Each test scores its own gates: the compile template remembers gates by artifact bytes within a process
    (host/compile/target.py), and a test may change a runner under the same bytes."""
    import sys

    module = sys.modules.get("mait_deploy.host.compile.target")
    if module is not None:
        module._GATES.clear()
    yield
