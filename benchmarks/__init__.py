"""Benchmark scripts that write JSON to benchmarks/results/.

Run them as modules from the repository root (python -m benchmarks.NAME): a script named after a package
(onnxruntime.py, openvino.py) would otherwise shadow that package on sys.path.
"""
