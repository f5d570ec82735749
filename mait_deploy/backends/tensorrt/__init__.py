"""TensorRT: an ONNX (INT8: explicit Q/DQ) and a build plan; the engine is built on the NVIDIA device."""

from mait_deploy.backends import Backend, DeviceSide, HostSide, NativeSide

BACKEND = Backend(
    name="tensorrt",
    target="mait_deploy.backends.tensorrt.target:TensorRtTarget",
    runner="mait_deploy.backends.tensorrt.runner:TensorRtRunner",
    # No GPU on the host: the accuracy gate scores the ONNX TensorRT builds from in ONNX Runtime.
    # JetPack installs TensorRT's Python bindings system-wide: a board's venv must see system packages.
    host=HostSide(extra="export", modules=("onnxruntime",), gate_runtime="onnxruntime"),
    device=DeviceSide(extra="tensorrt", module="tensorrt", system_runtime=True),
    colour="#c44e52",
    cli="mait_deploy.backends.tensorrt.cli:register",
    summary="TensorRT (Jetson and NVIDIA GPUs; engine built on the device; fp32, fp16, int8 Q/DQ)",
    native=NativeSide(absent="the native runner has no TensorRT backend yet (TensorRT's SDK comes with JetPack and "
                             "could not be built against here): on a Jetson run this bundle with the Python device "
                             "side (mait-deploy build-engine, verify, predict)"),
)
