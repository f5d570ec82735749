"""`--precision auto` for a device of another int8 class: OpenVINO is timed with its kernels capped to the device's
ISA (ONEDNN_MAX_CPU_ISA + OV_CPU_MAX_ISA in a child process); a runtime that cannot be capped is refused."""

import pytest

from mait_deploy.backends.onnxruntime.target import OnnxRuntimeTarget
from mait_deploy.backends.openvino.target import OpenVinoTarget
from mait_deploy.device.profiling import isa
from mait_deploy.errors import UnsupportedOption, ValidationError
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions

VNNI_HOST = {"model": "AMD EPYC", "machine": "x86_64", "int8_class": "x86-vnni", "bf16": True,
             "flags": ["avx", "avx2", "avx512bw", "avx512f", "avx512_vnni", "fma"]}
AVX2_HOST = {"model": "AMD EPYC 7763", "machine": "x86_64", "int8_class": "x86-avx2", "bf16": False,
             "flags": ["avx", "avx2", "fma"]}


@pytest.mark.parametrize("host,device,expected", [
    (VNNI_HOST, None, {}),
    (VNNI_HOST, "x86-vnni", {}),
    (VNNI_HOST, "x86-avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2"}),
    (VNNI_HOST, "x86-avx512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "OV_CPU_MAX_ISA": "AVX512_CORE"}),
    (VNNI_HOST, "x86-amx", None),  # a cap only lowers: this host has no AMX to show
    (AVX2_HOST, "x86-avx512", None),
    (AVX2_HOST, "x86-avx2", {}),
])
def test_openvino_caps_its_kernels_to_a_smaller_x86_device(monkeypatch, host, device, expected):
    import mait_deploy.host.compile.target as target_module

    for module in (isa, target_module):
        monkeypatch.setattr(module, "cpu_isa", lambda root="/": host)
    assert OpenVinoTarget().timing_environment(device) == expected


def test_runtimes_without_an_isa_cap_time_only_their_own_class(monkeypatch):
    import mait_deploy.host.compile.target as target_module

    monkeypatch.setattr(target_module, "cpu_isa", lambda root="/": VNNI_HOST)
    assert OnnxRuntimeTarget().timing_environment("x86-vnni") == {}
    assert OnnxRuntimeTarget().timing_environment(None) == {}
    assert OnnxRuntimeTarget().timing_environment("x86-avx2") is None


def test_openvino_device_isa_is_an_x86_class():
    with pytest.raises(UnsupportedOption,
                       match=r"device_isa='arm64-dotprod': use one of .*\(OpenVINO's CPU plugin runs on x86"):
        OpenVinoTarget().check_options(CompileOptions(precision="int8",
                                                      target_options={"device_isa": "arm64-dotprod"}))
    OpenVinoTarget().check_options(CompileOptions(precision="fp32", target_options={"device_isa": "x86-avx2"}))


def test_precision_auto_refuses_a_device_class_it_cannot_time_before_any_work(tmp_path):
    from mait_deploy.host.compile.api import compile_model

    other = "x86-avx2" if isa.cpu_isa()["int8_class"] != "x86-avx2" else "x86-vnni"
    with pytest.raises(UnsupportedOption, match=rf"device_isa={other}: onnxruntime cannot be made to run as that"):
        compile_model(tmp_path / "missing.onnx", "onnxruntime",
                      CompileOptions(precision="auto", target_options={"device_isa": other}), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_the_capped_race_runs_in_a_child_that_has_the_environment(tmp_path):
    from mait_deploy.device.profiling.side_by_side import time_bundles

    # A child that cannot start shows that the environment reached it; the failure is one line.
    failed = r"^timing with PYTHONHOME=/nonexistent failed: ModuleNotFoundError: No module named .encodings.$"
    with pytest.raises(ValidationError, match=failed):
        time_bundles({"a": tmp_path, "b": tmp_path}, environment={"PYTHONHOME": "/nonexistent"})


@pytest.mark.slow  # three OpenVINO builds and a timed race (~35 s): CI's slow run
def test_openvino_precision_auto_for_an_avx2_device_times_under_the_cap(tmp_path, shipped_source):
    pytest.importorskip("torch")
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from mait_deploy.host.compile.api import compile_model

    options = CompileOptions(precision="auto", calibration=CalibrationOptions(count=64),
                             target_options={"device_isa": "x86-avx2"})
    result = compile_model(shipped_source.onnx_path, "openvino", options, tmp_path / "auto", eval_count=300)
    choice = result.manifest.build["precision_choice"]
    if isa.cpu_isa()["int8_class"] != "x86-avx2":
        assert "openvino's kernels capped to x86-avx2 (ONEDNN_MAX_CPU_ISA=AVX2 OV_CPU_MAX_ISA=AVX2)" in choice["why"]
    else:  # this machine is such a device: no cap
        assert "side by side at batch 1" in choice["why"] and "on this machine (" in choice["why"], choice["why"]
        assert "capped" not in choice["why"], choice["why"]
    timing = choice["side_by_side"]
    assert set(timing["median_ms"]) | set(choice["not_chosen"]) == {"fp32", "fp16", "int8"}
    assert all(value > 0 for value in timing["median_ms"].values())
    if result.precision != "fp32":
        assert timing["ratio"][result.precision]["median"] > 1.0
    assert result.manifest.build["options"]["target_options"]["device_isa"] == "x86-avx2"


def test_a_failed_child_is_summed_up_by_its_exception_line():
    from mait_deploy.errors import failure_line

    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad bundle\n\n"
    assert failure_line(traceback) == "ValueError: bad bundle"
    assert failure_line("warming up\nKilled\n") == "Killed"
    assert failure_line("  \n", "pip failed") == "pip failed"
    pip = "Collecting x\nERROR: Could not find a version that satisfies x\nERROR: No matching distribution found for x\n"
    assert failure_line(pip) == "ERROR: No matching distribution found for x"
