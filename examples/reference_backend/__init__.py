"""A complete mait-deploy backend outside the package: the FP32 ONNX run by ONNX's own numpy interpreter.

``onnx.reference.ReferenceEvaluator`` implements the ONNX specification in numpy: slow (milliseconds per op), but
exact, so it is a yardstick for other runtimes. This is the worked example of docs/architecture.md, shaped like
the backends in ``mait_deploy/backends/``: this declaration, a host side (``target.py``) and a device side
(``runner.py``). Nothing in mait-deploy is edited to use it::

    import sys; sys.path.insert(0, "examples")
    from mait_deploy import backends, compile_model, verify_bundle
    from reference_backend import BACKEND
    backends.register(BACKEND)
    compile_model(None, "onnx-reference", CompileOptions(), "out/ref"); verify_bundle("out/ref")
"""

from mait_deploy.backends import Backend, DeviceSide, HostSide

BACKEND = Backend(
    name="onnx-reference",
    target="reference_backend.target:ReferenceTarget",
    runner="reference_backend.runner:ReferenceRunner",
    host=HostSide(extra="export", modules=("onnx",)),
    device=DeviceSide(extra="export"),  # the onnx package
    colour="#8172b3",
    summary="ONNX reference interpreter (numpy; exact and slow, for checking other runtimes)",
)
