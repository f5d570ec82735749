"""TensorRT: an ONNX (INT8: explicit Q/DQ) and a build plan; the engine is built on the NVIDIA device."""

from mait_deploy.backends import Backend

BACKEND = Backend(
    name="tensorrt",
    target="mait_deploy.backends.tensorrt.target:TensorRtTarget",
    runner="mait_deploy.backends.tensorrt.runner:TensorRtRunner",
    # No GPU on the host: the accuracy gate scores the ONNX TensorRT builds from in ONNX Runtime.
    # JetPack installs TensorRT's Python bindings system-wide: a board's venv must see system packages.
    runtime_extra="tensorrt", runtime_module="tensorrt", system_runtime=True,
    compile_extra="export", compile_modules=("onnxruntime",),
    gate_runtime="onnxruntime", colour="#c44e52",
    cli="mait_deploy.backends.tensorrt.cli:register",
    summary="TensorRT (Jetson and NVIDIA GPUs; engine built on the device; fp32, fp16, int8 Q/DQ)",
    no_native="the native runner has no TensorRT backend yet (TensorRT's SDK comes with JetPack and could not be "
              "built against here): on a Jetson run this bundle with the Python device side "
              "(mait-deploy build-engine, verify, predict)",
)
