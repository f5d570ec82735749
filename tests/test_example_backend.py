"""A backend added from outside the package (examples/reference_backend/) goes through compile, verify,
evaluate and profile, registered at run time: no other module is edited to add it."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from mait_deploy import backends
from mait_deploy.device.runner import runner_class

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def reference_backend(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from reference_backend import BACKEND

    backends.register(BACKEND)
    yield BACKEND
    backends.unregister(BACKEND.name)
    for name in [m for m in sys.modules if m.startswith("reference_backend")]:
        del sys.modules[name]


def test_a_backend_registered_at_run_time_compiles_verifies_and_profiles(reference_backend, tmp_path, shipped_source):
    from mait_deploy import compile_model, profile, verify_bundle
    from mait_deploy.device.accuracy import evaluate_bundle
    from mait_deploy.device.profiling.measure import ProfileOptions
    from mait_deploy.host.compile.spec import CompileOptions

    assert "onnx-reference" in backends.names() and backends.availability()["onnx-reference"] == ""
    bundle = tmp_path / "ref"
    result = compile_model(shipped_source, "onnx-reference", CompileOptions(precision="fp32"), bundle, eval_count=100)
    assert result.gate.passed and result.gate.max_abs_diff < 1e-4  # the reference computes the FP32 model
    assert result.to_dict()["manifest"]["runtime"] == {"name": "onnx-reference", "extra": "export", "options": {}}
    report = verify_bundle(bundle)
    assert report.passed and report.runtime["runtime"] == "onnx-reference"
    assert evaluate_bundle(bundle, count=50).top1 > 0.7
    timing = profile(bundle, ProfileOptions(batches=(1, 2), warmup=1, iterations=3))
    assert timing.error is None and [r.batch for r in timing.results] == [1, 2]
    assert all(r.model.percentiles_ms["p50"] > 0 for r in timing.results)


def test_unknown_and_unregistered_targets_are_one_line_errors(reference_backend):
    from mait_deploy.errors import UnsupportedOption

    backends.unregister("onnx-reference")
    with pytest.raises(UnsupportedOption, match="unknown target 'onnx-reference'"):
        backends.get("onnx-reference")
    backends.register(reference_backend)
    assert runner_class("onnx-reference").__name__ == "ReferenceRunner"
