"""ExecuTorch: PyTorch's own edge runtime, a .pte lowered whole to XNNPACK (fp32, int8); run natively on the device."""

from mait_deploy.backends import Backend

BACKEND = Backend(
    name="executorch",
    target="mait_deploy.backends.executorch.target:ExecuTorchTarget",
    runner="mait_deploy.backends.executorch.runner:ExecuTorchRunner",
    # The host gates and profiles with ExecuTorch's Python runtime (it links libtorch); a device runs the bundle
    # through the native runner's library (mait_deploy/native, built against the wheel's C++ runtime).
    runtime_extra="executorch", runtime_module="executorch.runtime",
    compile_extra="executorch", compile_modules=("executorch", "torch"),
    colour="#8172b3",
    summary="ExecuTorch .pte on XNNPACK (Arm and x86 CPUs; fp32, int8; native runner on the device)",
    native_sdk="ExecuTorch's C++ runtime: `pip install executorch==1.5.1` (its wheel ships the headers, the shared "
               "libraries and executorch-config.cmake, whose targets need CMake >= 3.28: `pip install cmake`), or "
               "set executorch_DIR",
)
