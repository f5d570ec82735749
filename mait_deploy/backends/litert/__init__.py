"""LiteRT (TensorFlow Lite): .tflite from PyTorch via litert-torch, XNNPACK on Arm and x86 CPUs."""

from mait_deploy.backends import Backend, DeviceSide, HostSide, NativeSide

BACKEND = Backend(
    name="litert",
    target="mait_deploy.backends.litert.target:LiteRtTarget",
    runner="mait_deploy.backends.litert.runner:LiteRtRunner",
    host=HostSide(extra="litert-convert", modules=("litert_torch", "ai_edge_litert")),
    device=DeviceSide(extra="litert", module="ai_edge_litert.interpreter"),
    colour="#55a868",
    summary="LiteRT .tflite (Raspberry Pi and other Arm boards; fp32, fp16, int8)",
    # The native runner calls libLiteRt.so's C API, declared in the plug-in's native/litert_c.h (the wheel has no
    # headers), checked at configure time against the library it found and at run time by the golden self-test.
    native=NativeSide(sdk="LiteRT's C API: `pip install ai-edge-litert==2.3.0` (its wheel ships libLiteRt.so; the "
                          "runner declares the functions it calls), or set LITERT_ROOT to the folder holding "
                          "libLiteRt.so"),
)
