"""ONNX Runtime: the verified ONNX as it is (FP32), in FP16, or as an INT8 Q/DQ graph; CPU or any provider."""

from mait_deploy.backends import Backend, DeviceSide, HostSide, NativeSide

BACKEND = Backend(
    name="onnxruntime",
    target="mait_deploy.backends.onnxruntime.target:OnnxRuntimeTarget",
    runner="mait_deploy.backends.onnxruntime.runner:OnnxRuntimeRunner",
    host=HostSide(extra="export", modules=("onnxruntime",)),
    device=DeviceSide(extra="onnxruntime", module="onnxruntime"),
    colour="#4c72b0",
    summary="ONNX Runtime (any CPU; fp32, fp16, int8 Q/DQ)",
    native=NativeSide(sdk="ONNX Runtime's C API: `apt-get install libonnxruntime-dev` (Debian trixie, Raspberry Pi "
                          "OS), or set `ONNXRUNTIME_ROOT` to a folder with `include/onnxruntime` (the library may "
                          "come from `pip install onnxruntime`, whose wheel holds it)"),
)
