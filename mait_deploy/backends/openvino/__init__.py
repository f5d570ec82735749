"""OpenVINO: IR in FP32, FP16 or INT8 (NNCF) for Intel CPUs, GPUs and NPUs."""

from mait_deploy.backends import Backend, DeviceSide, HostSide, NativeSide

BACKEND = Backend(
    name="openvino",
    target="mait_deploy.backends.openvino.target:OpenVinoTarget",
    runner="mait_deploy.backends.openvino.runner:OpenVinoRunner",
    host=HostSide(extra="nncf", modules=("openvino", "nncf")),
    device=DeviceSide(extra="openvino", module="openvino"),
    colour="#dd8452",
    summary="OpenVINO IR (Intel CPU/GPU/NPU; fp32, fp16, int8 via NNCF)",
    native=NativeSide(sdk="OpenVINO's C++ SDK: `pip install openvino==2026.4.1` (its wheel ships the headers and "
                          "`OpenVINOConfig.cmake`), or set `OpenVINO_DIR`"),
)
