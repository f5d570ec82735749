"""INT8 accuracy by CPU ISA: the same INT8 bundles scored on this CPU and on an x86 CPU without VNNI.

A CPU without VNNI runs ONNX Runtime's u8s8 int8 kernels with VPMADDUBSW, whose int16 pair sums saturate. This
script builds the default model's INT8 bundles here (ONNX Runtime u8s8 and u8u8, TensorRT's symmetric Q/DQ model,
OpenVINO (NNCF) and LiteRT) and scores each on the same Fashion-MNIST test images with the device runtime:
natively, and under ``qemu-x86_64 -cpu EPYC-Milan-v1`` (user-mode emulation of a Zen 3 EPYC: AVX2/FMA, no
AVX-512, no VNNI; its CPUID is what ONNX Runtime's, OpenVINO's and XNNPACK's kernel dispatch reads, so the
emulated process really runs the AVX2 kernels, saturating ones included; the functional probe ``u8s8_exact`` says
so in the JSON). The TensorRT Q/DQ model is also scored with exact int8 simulation (Q/DQ as float ops), which is
what its accuracy gate uses. Each run also checks the bundle's golden set as ``verify`` does on a device, and
each emulated run's logits are compared with the native run's (``top1_agreement``, ``max_abs_logit_diff``).
Emulation is slow (~0.1 s per image per bundle).

    python -m benchmarks.int8_isa --count 1000          # needs qemu-user-static (apt-get install qemu-user-static)
    python -m benchmarks.int8_isa --count 10000 --bundles onnxruntime-u8s8,onnxruntime-u8u8,openvino-int8,litert-int8
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import benchmark_parser, write_result
from mait_deploy.errors import failure_line

BUNDLES = {"onnxruntime-u8s8": ("onnxruntime", {"int8_format": "u8s8"}),
           "onnxruntime-u8u8": ("onnxruntime", {"int8_format": "u8u8"}),
           "tensorrt-qdq": ("tensorrt", {}),
           "openvino-int8": ("openvino", {}),
           "litert-int8": ("litert", {})}
EMULATED_CPU = "EPYC-Milan-v1"  # the Zen 3 EPYC of issue 19: AVX2/FMA, no AVX-512, no VNNI, no BF16


def score(bundle: Path, count: int, simulate: bool, logits_path: Path) -> dict:
    """Top-1 of a bundle through its device runtime (TensorRT's through ONNX Runtime on the ONNX its engine is
    built from) on ``count`` test images, and what this process's int8 kernels are; the logits go to
    ``logits_path``."""
    import numpy as np

    from mait_deploy.backends.onnxruntime.runner import u8s8_exact
    from mait_deploy.config import PreprocessConfig
    from mait_deploy.device.bundle import load_golden
    from mait_deploy.device.data.sources import load_dataset
    from mait_deploy.device.logits import compare_logits
    from mait_deploy.device.manifest import read_manifest
    from mait_deploy.device.runner import RunnerOptions, runner_class

    manifest = read_manifest(bundle)
    data = load_dataset("fashion-mnist", "evaluation", PreprocessConfig.from_dict(manifest.preprocess),
                        manifest.labels, count=count, seed=0, num_classes=manifest.model["num_classes"])
    if manifest.target == "tensorrt":
        options = RunnerOptions(extra={"simulate_int8": simulate})
        runner = runner_class("onnxruntime")(bundle, manifest, options)
    else:
        from mait_deploy.device.bundle import load_bundle

        runner = load_bundle(bundle)
    golden = load_golden(bundle, manifest)
    with runner:
        logits = runner.run(data.inputs)
        golden_check = compare_logits(golden.outputs(runner), golden.logits)  # what `verify` checks on a device
    np.save(logits_path, logits)
    return {"top1": float((logits.argmax(-1) == data.labels).mean()), "count": len(data),
            "u8s8_exact": u8s8_exact(), "simulate_int8": simulate,
            "golden": {"max_abs_diff": golden_check.max_abs_diff, "top1_agreement": golden_check.top1_agreement,
                       "passed": golden_check.within(manifest.golden.tolerance)}}


def agreement(native: Path, emulated: Path) -> dict:
    """How far an emulated run's logits are from the native run's: top-1 agreement and the largest difference."""
    import numpy as np

    a, b = np.load(native), np.load(emulated)
    return {"top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
            "max_abs_logit_diff": float(np.abs(a - b).max())}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--bundles", default=",".join(BUNDLES), help=f"comma-separated, of {', '.join(BUNDLES)}")
    parser.add_argument("--cpu", default=EMULATED_CPU, help="qemu's CPU model for the emulated runs")
    parser.add_argument("--score", help="internal: score one bundle and print JSON")
    parser.add_argument("--simulate", action="store_true", help="internal: with --score, simulate int8 exactly")
    parser.add_argument("--logits", help="internal: with --score, where the logits go")
    args = parser.parse_args()
    if args.score:
        print(json.dumps(score(Path(args.score), args.count, args.simulate, Path(args.logits))))
        return
    names = [name for name in args.bundles.split(",") if name]
    unknown = sorted(set(names) - set(BUNDLES))
    if unknown or not names:
        raise SystemExit(f"--bundles: unknown {', '.join(unknown) or '(none given)'}; use {', '.join(BUNDLES)}")
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64(-static) is not installed: apt-get install -y qemu-user-static")
    from mait_deploy import compile_model
    from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
    from mait_deploy.host.evaluate import evaluate_onnx
    from mait_deploy.host.export.onnx import export_onnx

    results: dict = {"count": args.count, "emulator": f"{qemu} -cpu {args.cpu}"}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        export_onnx(None, root / "fp32.onnx")
        results["fp32_top1"] = evaluate_onnx(root / "fp32.onnx", count=args.count).top1
        for name in names:
            target, options = BUNDLES[name]
            source = None if target == "litert" else root / "fp32.onnx"  # LiteRT converts from PyTorch
            compile_model(source, target, CompileOptions(
                precision="int8", calibration=CalibrationOptions(count=256), target_options=options),
                root / name, evaluation=None)
            row = {}
            variants = [("native", False, False), ("no_vnni", True, False)]
            if target == "tensorrt":
                variants += [("native_simulated", False, True), ("no_vnni_simulated", True, True)]
            for label, emulate, simulate in variants:
                logits = root / f"{name}-{label}.npy"
                command = [sys.executable, "-m", "benchmarks.int8_isa", "--score", str(root / name),
                           "--count", str(args.count), "--logits", str(logits)] + (["--simulate"] if simulate else [])
                if emulate:
                    command = [qemu, "-cpu", args.cpu, *command]
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{name} {label} failed: {failure_line(done.stderr)}")
                row[label] = json.loads(done.stdout.strip().splitlines()[-1])
                row[label]["seconds"] = round(time.perf_counter() - started, 1)
                row[label]["drop_points"] = round((results["fp32_top1"] - row[label]["top1"]) * 100, 3)
                if emulate:
                    row[label].update(agreement(root / f"{name}-{label.replace('no_vnni', 'native')}.npy", logits))
                print(name, label, row[label], flush=True)
            results[name] = row
    print(write_result(f"int8_isa_{args.count}", results))


if __name__ == "__main__":
    main()
