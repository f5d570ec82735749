"""ExecuTorch: PyTorch's own edge runtime, a .pte lowered whole to XNNPACK (fp32, int8); run natively on the device."""

from mait_deploy.backends import Backend

BACKEND = Backend(
    name="executorch",
    target="mait_deploy.backends.executorch.target:ExecuTorchTarget",
    runner="mait_deploy.backends.executorch.runner:ExecuTorchRunner",
    # The host gates and profiles with ExecuTorch's Python runtime (it links libtorch). A device runs the bundle
    # through the native runner's library, built against the wheel's C++ runtime: on a device the wheel is an SDK,
    # installed without its Python dependencies (none of which it imports), beside CMake >= 3.28.
    runtime_extra="executorch-device", runtime_module="executorch", runtime_sdk_wheels=("executorch==1.5.1",),
    device_runs_native=True,
    compile_extra="executorch", compile_modules=("executorch", "torch"),
    colour="#8172b3",
    summary="ExecuTorch .pte on XNNPACK (Arm and x86 CPUs; fp32, int8; native runner on the device)",
    native_sdk="ExecuTorch's C++ runtime: `pip install executorch==1.5.1` (its wheel ships the headers, the shared "
               "libraries and executorch-config.cmake, whose targets need CMake >= 3.28: `pip install cmake`), or "
               "set executorch_DIR",
)
