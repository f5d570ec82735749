"""ExecuTorch: PyTorch's own edge runtime, a .pte lowered whole to XNNPACK (fp32, int8); run natively on the device."""

from mait_deploy.backends import Backend, DeviceSide, HostSide, NativeSide

BACKEND = Backend(
    name="executorch",
    target="mait_deploy.backends.executorch.target:ExecuTorchTarget",
    runner="mait_deploy.backends.executorch.runner:ExecuTorchRunner",
    # The host gates and profiles with ExecuTorch's Python runtime (it links libtorch). A device runs the bundle
    # through the native runner's library, built against the wheel's C++ runtime: on a device the wheel is an SDK,
    # installed without its Python dependencies (none of which it imports), beside CMake >= 3.28.
    device=DeviceSide(extra="executorch-device", module="executorch", sdk_wheels=("executorch==1.5.1",),
                      runs_native=True),
    host=HostSide(extra="executorch", modules=("executorch", "torch")),
    colour="#8172b3",
    summary="ExecuTorch .pte on XNNPACK (Arm and x86 CPUs; fp32, int8; native runner on the device)",
    native=NativeSide(sdk="ExecuTorch's C++ runtime: `pip install executorch==1.5.1` (its wheel ships the headers, "
                          "the shared libraries and executorch-config.cmake, whose targets need CMake >= 3.28: "
                          "`pip install cmake`), or set executorch_DIR"),
)
