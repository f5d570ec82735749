"""OpenVINO target: IR in FP32/FP16/INT8 from the shipped checkpoint, the gate, the runner and its precision."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")

from mait_deploy._deps import require
from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.errors import MissingDependency, UnsupportedOption
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from tests.shipped import default_checkpoint

EVAL_COUNT = 1000


@pytest.fixture(scope="module")
def bundles(shipped_bundles):
    return shipped_bundles.of("openvino", ("fp32", "fp16", "int8"))


def test_ir_files_and_precisions(bundles):
    folders, results = bundles
    for precision in ("fp32", "fp16", "int8"):
        names = sorted(p.name for p in (folders[precision]).iterdir())
        assert names == ["golden.bin", "manifest.json", "model.bin", "model.xml"]
        ir = results[precision].manifest.build["ir"]
        assert len(ir["mask_constants"]) == 1
        assert ir["mask_constants"][0]["consumers"] == default_checkpoint().masked_blocks
    assert results["fp32"].manifest.build["ir"]["mask_constants"][0]["dtype"] == "f32"
    assert results["fp16"].manifest.build["ir"]["mask_constants"][0]["dtype"] == "f16"
    params = default_checkpoint().params
    fp32_bin = (folders["fp32"] / "model.bin").stat().st_size
    assert fp32_bin >= 4 * params * 0.98, "the FP32 IR was compressed to FP16"
    assert (folders["fp16"] / "model.bin").stat().st_size < 0.6 * fp32_bin
    int8 = results["int8"].manifest.build
    assert int8["ir"]["fake_quantize"] > 0 and "nncf" in int8["quantization"]["method"]


def test_parity_and_gate(bundles):
    _, results = bundles
    assert results["fp32"].gate.max_abs_diff <= 1e-4 and results["fp32"].gate.top1_agreement == 1.0
    assert results["fp16"].gate.top1_agreement >= 0.995
    assert results["int8"].gate.passed and results["int8"].gate.drop_points <= 1.0


def test_runner_sets_f32_unless_asked(bundles):
    folders, _ = bundles
    with load_bundle(folders["fp32"]) as runner:
        info = runner.runtime_info()
        assert info["inference_precision_hint"] == "f32" and info["device"] == "CPU"
        x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
        f32 = runner.run(x)
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        # No BF16 on this CPU: asking for it is an error, not a silent f32 run.
        with pytest.raises(UnsupportedOption, match="bf16 is not available"):
            load_bundle(folders["fp32"], RunnerOptions(extra={"inference_precision": "bf16"})).activate()
        return
    with load_bundle(folders["fp32"], RunnerOptions(extra={"inference_precision": "bf16"})) as runner:
        assert runner.runtime_info()["inference_precision_hint"] == "bf16"
        bf16 = runner.run(x)
    assert 1e-5 < np.abs(f32 - bf16).max() < 0.5  # bf16 really ran, and is close


def test_static_shapes_per_batch_match_dynamic(bundles):
    """Static mode compiles one shape per batch size (kept while they fit in static_cache_mb) and gives the dynamic
    model's outputs; batch sizes that alternate compile once each."""
    folders, _ = bundles
    x = np.random.default_rng(1).standard_normal((5, 1, 28, 28)).astype(np.float32)
    with load_bundle(folders["fp32"], RunnerOptions(extra={"shapes": "dynamic"})) as runner:
        dynamic = runner.run(x)
        assert runner.runtime_info()["shapes"] == "dynamic"
    with load_bundle(folders["fp32"]) as runner:
        assert runner.runtime_info()["static_batches"] == [1]
        outputs = [runner.run(x[:n]) for n in (5, 2, 1, 5)]
        assert runner.runtime_info()["static_batches"] == [2, 1, 5]  # least recently used first
        compiled = runner.compiles
        for _ in range(3):
            for n in (1, 2, 5):
                runner.run(x[:n])
        assert runner.compiles == compiled == 3  # alternating sizes never recompile
        assert runner.runtime_latency_ms > 0
    with load_bundle(folders["fp32"], RunnerOptions(extra={"static_cache_mb": 1})) as runner:
        for n in (5, 2, 1):
            runner.run(x[:n])
        info = runner.runtime_info()
        assert info["static_batches"][-1] == 1  # the newest is kept (at least one), older ones only within budget
        assert len(info["static_batches"]) == 1 or info["static_cache_mb"] <= 1
    for out in outputs:
        np.testing.assert_allclose(out, dynamic[:len(out)], atol=1e-4)
    with pytest.raises(UnsupportedOption, match="shapes=.fixed.: use one of static, dynamic"):
        load_bundle(folders["fp32"], RunnerOptions(extra={"shapes": "fixed"})).activate()


def test_profile_records_openvinos_own_latency(bundles):
    from mait_deploy.device.profiling.measure import ProfileOptions, profile

    folders, _ = bundles
    report = profile(folders["fp32"], ProfileOptions(batches=(2,), warmup=2, iterations=30, end_to_end=False))
    result = report.results[0]
    own, wall = result.runtime_reported, result.model
    assert own.count == wall.count == 30
    # OpenVINO times the inference inside our timed call, so every percentile of its figure is at most ours.
    assert 0 < own.percentiles_ms["p50"] <= wall.percentiles_ms["p50"]
    assert own.max_ms <= wall.max_ms


def test_verify_each_bundle(bundles):
    folders, _ = bundles
    for precision in ("fp32", "fp16", "int8"):
        assert verify_bundle(folders[precision]).passed


def test_unknown_device_lists_available(bundles):
    folders, _ = bundles
    with pytest.raises(UnsupportedOption, match="available: CPU"):
        load_bundle(folders["fp32"], RunnerOptions(extra={"device": "NPU"})).activate()


def test_bad_openvino_options(tmp_path):
    with pytest.raises(UnsupportedOption, match="--batch"):
        compile_model(None, "openvino", CompileOptions(batch=2), tmp_path / "b")
    with pytest.raises(UnsupportedOption, match="int8 only"):
        compile_model(None, "openvino", CompileOptions(target_options={"accuracy_control": True}), tmp_path / "b")
    with pytest.raises(UnsupportedOption, match="no option"):
        compile_model(None, "openvino", CompileOptions(target_options={"turbo": 1}), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_missing_openvino_names_the_extra():
    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'openvino': raise ImportError(name=name)\n"
            "sys.meta_path.insert(0, B())\n"
            "from mait_deploy._deps import require\n"
            "require('openvino', extra='openvino')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "install the 'openvino' extra" in result.stderr
    with pytest.raises(MissingDependency, match=r"pip install \"\.\[nothing\]\" in a mait-deploy checkout"):
        require("surely_not_a_module_xyz", extra="nothing")


def test_openvino_bundle_runs_without_torch(bundles):
    folders, _ = bundles
    from tests.helpers import BLOCKER

    code = BLOCKER + (f"from mait_deploy.device.bundle import verify_bundle\n"
                      f"import sys\nr = verify_bundle({str(folders['int8'])!r})\n"
                      f"assert 'torch' not in sys.modules\nprint(r.passed)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("True")


def test_cli_json_is_clean_with_nncf_progress(tmp_path, shipped_source):
    """From the shipped export (the export's own output beside --json: tests/cli/test_cli.py)."""
    result = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "compile", str(shipped_source.onnx_path),
                             "-t", "openvino", "-p", "int8", "--calib-count", "64", "--eval-count", "200",
                             "-o", str(tmp_path / "b"), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gate"]["passed"]


def test_accuracy_controlled_quantization(tmp_path, shipped_source):
    options = CompileOptions(precision="int8", max_accuracy_drop=0.5, calibration=CalibrationOptions(count=200),
                             target_options={"accuracy_control": True})
    result = compile_model(shipped_source, "openvino", options, tmp_path / "ac", eval_count=500)
    quantization = result.manifest.build["quantization"]
    assert quantization["method"].startswith("nncf accuracy_control")
    assert result.gate.passed and result.manifest.build["ir"]["fake_quantize"] > 0


def test_a_precision_the_device_cannot_compute_is_refused():
    from mait_deploy.backends.openvino.runner import check_precision_supported

    with pytest.raises(UnsupportedOption, match="bf16 is not available on OpenVINO CPU"):
        check_precision_supported("bf16", "CPU", ["FP32", "INT8"])
    with pytest.raises(UnsupportedOption, match="f16 is not available"):
        check_precision_supported("f16", "CPU", ["FP32", "BF16"])
    check_precision_supported("bf16", "CPU", ["FP32", "BF16"])
    check_precision_supported("f32", "CPU", ["FP32"])


def _host_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


_REAL_CORE = ov.Core


class _CoreWithout:
    """openvino.Core on a CPU without BF16 compute (the AVX2 Zen 3's capabilities)."""

    def __init__(self):
        self._core = _REAL_CORE()

    def get_property(self, device, name):
        if name == "OPTIMIZATION_CAPABILITIES":
            return ["FP32", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]
        return self._core.get_property(device, name)

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_bf16_where_the_cpu_computes_it_and_a_one_line_refusal_where_not(tmp_path, monkeypatch):
    from mait_deploy.host import catalog
    from mait_deploy.host.deploy.pipeline import DeployOptions, _in_matrix

    target = catalog.target("openvino")
    assert not _in_matrix("onnxruntime", "bf16", DeployOptions(), {})  # only OpenVINO builds BF16
    if _host_bf16():
        result = compile_model(None, "openvino", CompileOptions(precision="bf16"), tmp_path / "bf16",
                               eval_count=EVAL_COUNT)
        manifest = result.manifest
        assert manifest.precision == "bf16" and manifest.runtime.options["inference_precision"] == "bf16"
        assert result.gate.passed and abs(result.gate.drop_points) <= 0.3, result.gate.summary()
        assert manifest.golden.tolerance.max_abs_diff == 0.1  # bfloat16's own tolerance
        assert verify_bundle(tmp_path / "bf16").passed
        with load_bundle(tmp_path / "bf16") as runner:
            runner.run(np.zeros((1, 1, 28, 28), np.float32))
            assert runner.runtime_info()["inference_precision_hint"] == "bf16"
        assert _in_matrix("openvino", "bf16", DeployOptions(), {})
        monkeypatch.setattr(ov, "Core", _CoreWithout)
        with pytest.raises(UnsupportedOption, match="inference precision bf16 is not available"):
            with load_bundle(tmp_path / "bf16") as runner:  # a BF16 bundle on a device without BF16
                runner.run(np.zeros((1, 1, 28, 28), np.float32))
    monkeypatch.setattr(ov, "Core", _CoreWithout)
    lacking = target.hardware_lacks(CompileOptions(precision="bf16"))
    assert lacking.startswith("openvino bf16 needs a device that computes in bfloat16") and "\n" not in lacking
    with pytest.raises(UnsupportedOption, match="openvino bf16 needs a device that computes in bfloat16"):
        compile_model(None, "openvino", CompileOptions(precision="bf16"), tmp_path / "refused", eval_count=100)
    assert not (tmp_path / "refused").exists()
    assert not _in_matrix("openvino", "bf16", DeployOptions(), {})  # not in deploy's matrix there
    assert _in_matrix("openvino", "bf16", DeployOptions(precisions=("bf16",)), {})  # asked for: a row says why


def test_per_layer_profile_shows_the_int8_kernels_and_the_blocks(bundles):
    from mait_deploy.device.profiling.layers import profile_layers

    folders, _ = bundles
    with load_bundle(folders["int8"]) as runner:
        profile = profile_layers(runner, batch=1, iterations=5, warmup=2)
    assert profile.mapping == "blocks" and profile.parts[-1].part == "head"
    # NNCF's INT8 IR: the MatMuls run in int8 kernels, the norms and softmax in float.
    assert profile.by_precision.get("int8", 0) > 0.3 * profile.total_ms, profile.by_precision
    assert any(layer.precision == "float" and layer.is_norm for layer in profile.layers)


def test_bf16_is_not_built_for_another_cpu_named_by_its_int8_class():
    from mait_deploy.device.profiling import isa
    from mait_deploy.host import catalog

    other = "x86-avx2" if isa.cpu_isa()["int8_class"] != "x86-avx2" else "x86-vnni"
    lacking = catalog.target("openvino").hardware_lacks(
        CompileOptions(precision="bf16", target_options={"device_isa": other}))
    assert lacking and lacking.startswith(f"openvino bf16 for another CPU (-O device_isa={other})")


def test_openvino_is_loaded_with_its_telemetry_off(tmp_path):
    """A bundle run and a compile import OpenVINO (which imports ovc) without openvino_telemetry: nothing is sent,
    no sender process is forked."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from mait_deploy.backends.openvino._import import import_openvino\n"
            "ov = import_openvino(); ov.convert_model  # ovc's import path, where the 'import' event is sent\n"
            "import nncf\n"
            "assert sys.modules['openvino_telemetry'] is None, sys.modules['openvino_telemetry']\n"
            "import openvino.tools.ovc.telemetry_utils as t; assert 'stub' in t.tm.__name__, t.tm\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_ir_text_does_not_depend_on_what_the_process_built_before(ort_fp32_bundle, tmp_path):
    """OpenVINO numbers the nodes it creates from a process-wide counter: the second conversion of the same ONNX
    names them differently, until the target renumbers them."""
    import onnx

    from mait_deploy.backends.openvino.target import stable_names
    from mait_deploy.host.export.graph import GENERATED_NAME

    onnx_path = next(ort_fp32_bundle.glob("*.onnx"))
    onnx_names = {node.name for node in onnx.load(str(onnx_path)).graph.node}
    assert not any(GENERATED_NAME.fullmatch(name) for name in onnx_names)  # the export's names never collide
    texts = {}
    for attempt, renumber in [("first", False), ("second", False), ("third", True), ("fourth", True)]:
        model = ov.convert_model(str(onnx_path))
        if renumber:
            assert stable_names(model, onnx_names) > 0
        ov.save_model(model, str(tmp_path / f"{attempt}.xml"))
        texts[attempt] = (tmp_path / f"{attempt}.xml").read_text()
    assert texts["first"] != texts["second"]
    assert texts["third"] == texts["fourth"]
