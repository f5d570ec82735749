"""LiteRT (TensorFlow Lite): .tflite from PyTorch via litert-torch, XNNPACK on Arm and x86 CPUs."""

from mait_deploy.backends import Backend

BACKEND = Backend(
    name="litert",
    target="mait_deploy.backends.litert.target:LiteRtTarget",
    runner="mait_deploy.backends.litert.runner:LiteRtRunner",
    runtime_extra="litert", runtime_module="ai_edge_litert.interpreter", compile_extra="litert-convert", compile_modules=("litert_torch", "ai_edge_litert"),
    colour="#55a868",
    summary="LiteRT .tflite (Raspberry Pi and other Arm boards; fp32, fp16, int8)",
    no_native="LiteRT has no C/C++ SDK to build against (ai-edge-litert ships libLiteRt.so without headers and no "
              "package index has them): on a Raspberry Pi run this bundle with the Python device side "
              "(mait-deploy verify/predict), or generate the app for an ONNX Runtime bundle of the model",
)
