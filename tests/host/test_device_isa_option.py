"""ONNX Runtime INT8 format chosen for the device's int8 class when it differs from the build host's."""

import pytest

from mait_deploy.backends.onnxruntime.target import OnnxRuntimeTarget, choose_int8_format
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.compile.spec import CompileOptions


@pytest.mark.parametrize("device,expected", [("x86-avx2", "u8u8"), ("x86-avx512", "u8u8"), ("x86-vnni", "u8s8"),
                                             ("arm64-dotprod", "u8s8"), ("x86-amx", "u8s8")])
def test_named_device_class_decides_the_format(device, expected):
    fmt, why = choose_int8_format("auto", device)
    assert fmt == expected and device in why and "-O device_isa" in why


def test_explicit_format_wins_and_bad_device_classes_are_errors():
    assert choose_int8_format("u8s8", None) == ("u8s8", "asked for")
    target = OnnxRuntimeTarget()
    with pytest.raises(UnsupportedOption, match="device_isa='pentium': use one of"):
        target.check_options(CompileOptions(precision="int8", target_options={"device_isa": "pentium"}))
    with pytest.raises(UnsupportedOption, match="cannot be combined"):
        target.check_options(CompileOptions(precision="int8", target_options={"device_isa": "x86-avx2",
                                                                              "int8_format": "u8s8"}))
    target.check_options(CompileOptions(precision="int8", target_options={"device_isa": "x86-avx2"}))
