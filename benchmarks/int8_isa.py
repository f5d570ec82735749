"""INT8 accuracy by CPU ISA: the same INT8 bundles scored on this CPU and on an x86 CPU without VNNI.

A CPU without VNNI runs ONNX Runtime's u8s8 int8 kernels with VPMADDUBSW, whose int16 pair sums saturate. This
script builds the demo model's INT8 bundles here (ONNX Runtime u8s8 and u8u8, TensorRT's symmetric Q/DQ model,
OpenVINO (NNCF) and LiteRT)
and scores each on the same Fashion-MNIST test images with the device runtime: natively, and under
``qemu-x86_64 -cpu max`` (user-mode emulation: AVX2, no AVX-512, no VNNI; its CPUID is what ONNX Runtime's
kernel dispatch reads, so the emulated process really runs the saturating kernels; the functional probe
``u8s8_exact`` says so in the JSON). The TensorRT Q/DQ model is also scored with exact int8 simulation (Q/DQ as
float ops), which is what its accuracy gate uses. Emulation is slow (~0.1 s per image): keep --count modest.

    python -m benchmarks.int8_isa --count 2000          # needs qemu-user-static (apt-get install qemu-user-static)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import benchmark_parser, write_result

BUNDLES = {"onnxruntime-u8s8": ("onnxruntime", {"int8_format": "u8s8"}),
           "onnxruntime-u8u8": ("onnxruntime", {"int8_format": "u8u8"}),
           "tensorrt-qdq": ("tensorrt", {}),
           "openvino-int8": ("openvino", {}),
           "litert-int8": ("litert", {})}


def score(bundle: Path, count: int, simulate: bool) -> dict:
    """Top-1 of a bundle through its device runtime (TensorRT's through ONNX Runtime on the ONNX its engine is
    built from) on ``count`` test images, and what this process's int8 kernels are."""
    from mait_deploy import backends
    from mait_deploy.backends.onnxruntime.runner import u8s8_exact
    from mait_deploy.config import PreprocessConfig
    from mait_deploy.device.data.sources import load_dataset
    from mait_deploy.device.manifest import read_manifest
    from mait_deploy.device.runner import RunnerOptions

    manifest = read_manifest(bundle)
    data = load_dataset("fashion-mnist", "evaluation", PreprocessConfig.from_dict(manifest.preprocess),
                        manifest.labels, count=count, seed=0, num_classes=manifest.model["num_classes"])
    if manifest.target == "tensorrt":
        options = RunnerOptions(extra={"simulate_int8": simulate})
        runner = backends.runner_class("onnxruntime")(bundle, manifest, options)
    else:
        from mait_deploy.device.bundle import load_bundle

        runner = load_bundle(bundle)
    with runner:
        logits = runner.run(data.inputs)
    return {"top1": float((logits.argmax(-1) == data.labels).mean()), "count": len(data),
            "u8s8_exact": u8s8_exact(), "simulate_int8": simulate}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--score", help="internal: score one bundle and print JSON")
    parser.add_argument("--simulate", action="store_true", help="internal: with --score, simulate int8 exactly")
    args = parser.parse_args()
    if args.score:
        print(json.dumps(score(Path(args.score), args.count, args.simulate)))
        return
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64(-static) is not installed: apt-get install -y qemu-user-static")
    from mait_deploy import compile_model
    from mait_deploy.host.compile.target import CalibrationOptions, CompileOptions
    from mait_deploy.host.evaluate import evaluate_onnx
    from mait_deploy.host.export.onnx import export_onnx

    results: dict = {"count": args.count, "emulator": f"{qemu} -cpu max"}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        export_onnx(None, root / "fp32.onnx")
        results["fp32_top1"] = evaluate_onnx(root / "fp32.onnx", count=args.count).top1
        for name, (target, options) in BUNDLES.items():
            source = None if target == "litert" else root / "fp32.onnx"  # LiteRT converts from PyTorch
            compile_model(source, target, CompileOptions(
                precision="int8", calibration=CalibrationOptions(count=256), target_options=options),
                root / name, evaluation=None)
            row = {}
            variants = [("native", False, False), ("no_vnni", True, False)]
            if target == "tensorrt":
                variants += [("native_simulated", False, True), ("no_vnni_simulated", True, True)]
            for label, emulate, simulate in variants:
                command = [sys.executable, "-m", "benchmarks.int8_isa", "--score", str(root / name),
                           "--count", str(args.count)] + (["--simulate"] if simulate else [])
                if emulate:
                    command = [qemu, "-cpu", "max", *command]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                row[label] = json.loads(done.stdout.strip().splitlines()[-1])
                row[label]["drop_points"] = round((results["fp32_top1"] - row[label]["top1"]) * 100, 3)
                print(name, label, row[label], flush=True)
            results[name] = row
    print(write_result("int8_isa", results))


if __name__ == "__main__":
    main()
