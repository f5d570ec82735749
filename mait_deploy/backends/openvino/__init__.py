"""OpenVINO: IR in FP32, FP16 or INT8 (NNCF) for Intel CPUs, GPUs and NPUs."""

from mait_deploy.backends import Backend

BACKEND = Backend(
    name="openvino",
    target="mait_deploy.backends.openvino.target:OpenVinoTarget",
    runner="mait_deploy.backends.openvino.runner:OpenVinoRunner",
    runtime_extra="openvino", runtime_module="openvino", compile_extra="nncf", compile_modules=("openvino", "nncf"),
    colour="#dd8452",
    summary="OpenVINO IR (Intel CPU/GPU/NPU; fp32, fp16, int8 via NNCF)",
    native_sdk="OpenVINO's C++ SDK: `pip install openvino==2026.4.1` (its wheel ships the headers and "
               "`OpenVINOConfig.cmake`), or set `OpenVINO_DIR`",
)
