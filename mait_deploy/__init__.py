"""mait-deploy: take MaiT image transformers to embedded devices.

The package root imports nothing heavy: torch, onnx and the runtimes load only in the modules that need them, so
the device side (runtimes, bundle, profiling) works with numpy and one runtime installed.
"""

__version__ = "0.1.0"
