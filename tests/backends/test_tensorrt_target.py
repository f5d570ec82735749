"""TensorRT target, everything checkable without a GPU: the Q/DQ ONNX (placement rules, ORT, gate), the build plan
and trtexec line, the engine-cache key, and the builder code against a test double of the tensorrt module (for the
flags, profiles and memory limits it requests, and only that). Real engine builds are marked gpu and skip here."""

import json
import shutil
import types

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from mait_deploy.backends.tensorrt import runner as trt_runtime
from mait_deploy.backends.tensorrt.target import (
    BuildPlan,
    check_explicit_quantization,
    trtexec_command,
)
from mait_deploy.errors import MissingDependency, UnsupportedOption, ValidationError
from mait_deploy.host.compile.api import compile_model
from mait_deploy.host.compile.spec import CalibrationOptions, CompileOptions
from tests.shipped import default_checkpoint


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, shipped_source):
    root = tmp_path_factory.mktemp("trt")
    results = {}
    for precision in ("fp16", "int8"):
        options = CompileOptions(precision=precision, calibration=CalibrationOptions(count=128))
        results[precision] = compile_model(shipped_source, "tensorrt", options, root / precision, eval_count=1000)
    return root, results


def test_qdq_onnx_follows_tensorrt_placement_rules(bundles):
    root, results = bundles
    model = onnx.load(str(root / "int8" / "model.onnx"))
    report = check_explicit_quantization(model)
    assert report["symmetric"] and report["opset"] >= 13 and report["weight_dq"] > 0
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert np.all(inits[node.input[2]] == 0) and inits[node.input[2]].dtype == np.int8
            assert np.all(inits[node.input[1]] > 0) and np.all(np.isfinite(inits[node.input[1]]))
    assert results["int8"].manifest.build["graph"]["mask_constants"][0]["consumers"] == \
        default_checkpoint().masked_blocks


def test_qdq_onnx_passes_the_gate_in_onnxruntime(bundles):
    _, results = bundles
    gate = results["int8"].gate
    assert gate.passed and gate.drop_points <= 1.0 and gate.count == 1000


def test_rules_reject_a_quantized_softmax_and_asymmetric_points(bundles, shipped_bundles):
    root, _ = bundles
    model = onnx.load(str(root / "int8" / "model.onnx"))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and
              n.input[0] not in {i.name for i in model.graph.initializer})
    softmax.input[0] = dq.output[0]
    with pytest.raises(ValidationError, match="Softmax"):
        check_explicit_quantization(model)
    # ONNX Runtime's own INT8 QDQ model is not one TensorRT takes.
    ort_int8 = shipped_bundles["onnxruntime", "int8"].folder
    with pytest.raises(ValidationError, match="zero point|int32|DQ feeds"):
        check_explicit_quantization(onnx.load(str(ort_int8 / "model.onnx")))


def test_fp16_bundle_carries_both_onnx_files_and_the_plan(bundles):
    root, results = bundles
    names = sorted(p.name for p in (root / "fp16").iterdir())
    assert names == ["golden.bin", "manifest.json", "model.onnx", "model_fp16.onnx"]
    plan = results["fp16"].manifest.runtime.options["plan"]
    assert plan["precision"] == "fp16" and plan["onnx_strongly_typed_fp16"] == "model_fp16.onnx"
    assert results["fp16"].manifest.build["trtexec"].startswith("trtexec --onnx=model.onnx")
    # A device builds from one of the two ONNX files: the bundle's size counts the larger, not both.
    sizes = {entry.path: entry.bytes for entry in (results["fp16"].manifest.artifact, *results["fp16"].manifest.files)}
    assert results["fp16"].size_bytes == max(sizes.values())


@pytest.mark.parametrize("options,expected", [
    ({}, ["--fp16", "--minShapes=input:1x1x28x28", "--optShapes=input:8x1x28x28", "--maxShapes=input:32x1x28x28",
          "--memPoolSize=workspace:1024M", "--builderOptimizationLevel=3", "--timingCacheFile=timing.cache"]),
    ({"dla_core": 0, "workspace_mb": 256, "max_batch": 4, "opt_batch": 2}, ["--useDLACore=0", "--allowGPUFallback",
                                                                            "--memPoolSize=workspace:256M",
                                                                            "--maxShapes=input:4x1x28x28"]),
    ({"timing_cache": False, "builder_optimization_level": 5}, ["--builderOptimizationLevel=5"]),
])
def test_trtexec_line_per_option_set(options, expected):
    plan = BuildPlan(precision="int8", input_name="input", sample_shape=(1, 28, 28), **options)
    line = trtexec_command(plan)
    for flag in expected:
        assert flag in line
    assert "--int8" in line
    if options.get("timing_cache") is False:
        assert "timingCache" not in line


@pytest.mark.parametrize("options,message", [
    ({"min_batch": 4, "opt_batch": 2}, "min_batch <= opt_batch"),
    ({"workspace_mb": 1}, "workspace_mb"),
    ({"builder_optimization_level": 9}, "optimization_level"),
    ({"dla_core": 0}, "DLA runs fp16 or int8"),
])
def test_bad_plans(options, message, tmp_path):
    with pytest.raises(UnsupportedOption, match=message):
        compile_model(None, "tensorrt", CompileOptions(precision="fp32", target_options=options), tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


# -- the device side without a device ----------------------------------------------------------------------

class FakeTrt:
    """A test double of the tensorrt module that records what the builder code requests."""

    def __init__(self, version="10.3.0", precision_flags=True):
        self.__version__ = version
        self.calls = []
        record = self.calls
        flags = ["GPU_FALLBACK"] + (["FP16", "INT8"] if precision_flags else [])
        self.BuilderFlag = types.SimpleNamespace(**{f: f for f in flags})
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)

        class Logger:
            WARNING = 2

            def __init__(self, level):
                pass

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                record.append(("profile", name, lo, opt, hi))

        class Cache:
            def serialize(self):
                return b"timing"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                record.append(("memory", pool, size))

            def set_flag(self, flag):
                record.append(("flag", flag))

            def add_optimization_profile(self, profile):
                record.append(("add_profile",))

            def create_timing_cache(self, data):
                record.append(("timing_cache_in", data))
                return Cache()

            def set_timing_cache(self, cache, ignore_mismatch):
                record.append(("timing_cache_set",))

            def __setattr__(self, name, value):
                record.append(("config", name, value))

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                record.append(("parse", len(data)))
                return True

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                record.append(("network_flags", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                record.append(("build",))
                return b"ENGINE"

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, Parser


def _manifest(root, name):
    from mait_deploy.device.manifest import read_manifest

    return read_manifest(root / name)


def test_builder_requests_on_tensorrt_10(bundles, tmp_path):
    root, _ = bundles
    bundle = tmp_path / "int8"
    shutil.copytree(root / "int8", bundle)
    fake = FakeTrt()
    gpu = trt_runtime.GpuInfo("Orin", "8.7")
    engine, built = trt_runtime.ensure_engine(bundle, _manifest(bundle, "."), fake, gpu)
    assert built and engine.read_bytes() == b"ENGINE"
    calls = fake.calls
    assert ("flag", "FP16") in calls and ("flag", "INT8") in calls
    assert ("memory", "WORKSPACE", 1024 << 20) in calls
    assert ("profile", "input", (1, 1, 28, 28), (8, 1, 28, 28), (32, 1, 28, 28)) in calls
    assert ("config", "builder_optimization_level", 3) in calls
    assert ("network_flags", 0) in calls and ("timing_cache_set",) in calls
    assert (bundle / "engine_cache" / "timing.cache").read_bytes() == b"timing"
    # Second time: the cached engine is reused, nothing is built.
    fake.calls.clear()
    _, built_again = trt_runtime.ensure_engine(bundle, _manifest(bundle, "."), fake, gpu)
    assert not built_again and ("build",) not in fake.calls


def test_builder_on_tensorrt_11_is_strongly_typed_and_uses_the_fp16_onnx(bundles, tmp_path):
    root, _ = bundles
    bundle = tmp_path / "fp16"
    shutil.copytree(root / "fp16", bundle)
    fake = FakeTrt(version="11.3.0", precision_flags=False)
    trt_runtime.ensure_engine(bundle, _manifest(bundle, "."), fake, trt_runtime.GpuInfo("RTX", "8.9"))
    assert ("network_flags", 1 << 1) in fake.calls
    assert not [c for c in fake.calls if c[0] == "flag" and c[1] in ("FP16", "INT8")]
    fp16_size = (bundle / "model_fp16.onnx").stat().st_size
    assert ("parse", fp16_size) in fake.calls


def test_dla_plan_requests_dla_with_gpu_fallback(bundles, tmp_path):
    root, _ = bundles
    bundle = tmp_path / "dla"
    shutil.copytree(root / "int8", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["runtime"]["options"]["plan"]["dla_core"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    fake = FakeTrt()
    trt_runtime.ensure_engine(bundle, _manifest(bundle, "."), fake, trt_runtime.GpuInfo("Orin", "8.7"))
    assert ("config", "default_device_type", "DLA") in fake.calls and ("config", "DLA_core", 1) in fake.calls
    assert ("flag", "GPU_FALLBACK") in fake.calls


def test_stale_or_foreign_cache_entries_are_rebuilt(bundles, tmp_path):
    root, _ = bundles
    bundle = tmp_path / "b"
    shutil.copytree(root / "int8", bundle)
    manifest = _manifest(bundle, ".")
    orin = trt_runtime.GpuInfo("Orin", "8.7")
    engine, _ = trt_runtime.ensure_engine(bundle, manifest, FakeTrt(), orin)
    # another GPU, another TensorRT: another key, so a new build
    other = FakeTrt()
    trt_runtime.ensure_engine(bundle, manifest, other, trt_runtime.GpuInfo("Xavier", "7.2"))
    assert ("build",) in other.calls
    newer = FakeTrt(version="10.7.0")
    trt_runtime.ensure_engine(bundle, manifest, newer, orin)
    assert ("build",) in newer.calls
    # a corrupted engine under the right key is not loaded
    engine.write_bytes(b"tampered")
    again = FakeTrt()
    rebuilt, built = trt_runtime.ensure_engine(bundle, manifest, again, orin)
    assert built and rebuilt.read_bytes() == b"ENGINE"
    # a metadata file from elsewhere (foreign identity) is refused too
    meta = rebuilt.with_suffix(".json")
    data = json.loads(meta.read_text())
    data["identity"]["gpu"] = "Other"
    meta.write_text(json.dumps(data))
    assert trt_runtime.cached_engine(rebuilt.parent, rebuilt.stem, {**data["identity"], "gpu": "Orin"}) is None


def test_cache_key_changes_with_every_input():
    gpu = trt_runtime.GpuInfo("Orin", "8.7")
    base = trt_runtime.cache_key(gpu, "10.3", "abc", {"precision": "fp16"})
    assert base == trt_runtime.cache_key(gpu, "10.3", "abc", {"precision": "fp16"})
    assert len({base, trt_runtime.cache_key(trt_runtime.GpuInfo("Orin", "8.6"), "10.3", "abc", {"precision": "fp16"}),
                trt_runtime.cache_key(gpu, "10.4", "abc", {"precision": "fp16"}),
                trt_runtime.cache_key(gpu, "10.3", "abd", {"precision": "fp16"}),
                trt_runtime.cache_key(gpu, "10.3", "abc", {"precision": "int8"})}) == 5


def test_missing_tensorrt_is_a_one_line_error_saying_where_it_comes_from(bundles):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from mait_deploy.device.bundle import load_bundle

    root, _ = bundles
    with pytest.raises(MissingDependency, match=r"TensorRT comes with NVIDIA JetPack .*'tensorrt' extra adds cuda-python"):
        load_bundle(root / "int8").activate()


@pytest.mark.gpu
def test_real_engine_build_and_inference(bundles):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA device)")
    from mait_deploy.device.bundle import verify_bundle

    root, _ = bundles
    assert trt.__version__
    assert verify_bundle(root / "int8").passed


def test_a_gate_already_scored_on_the_same_bytes_is_not_scored_again(tmp_path, shipped_source):
    """TensorRT FP32 gates the very ONNX of ONNX Runtime's FP32 bundle, in ONNX Runtime, on the same images: deploy
    scores it once. An artifact with other bytes (INT8 Q/DQ) is scored on its own."""
    model = shipped_source.onnx_path  # one export, as in deploy
    ort = compile_model(model, "onnxruntime", CompileOptions(precision="fp32"), tmp_path / "ort", eval_count=300)
    trt = compile_model(model, "tensorrt", CompileOptions(precision="fp32"), tmp_path / "trt", eval_count=300)
    assert trt.manifest.build["gate_reused"]["from"] == "onnxruntime fp32"
    assert "gate" not in trt.seconds and trt.gate.to_dict() == ort.gate.to_dict()
    assert ort.manifest.artifact.sha256 == trt.manifest.artifact.sha256
    other = compile_model(model, "tensorrt", CompileOptions(precision="fp32", max_accuracy_drop=0.5),
                          tmp_path / "trt-strict", eval_count=300)  # another limit: another gate
    assert "gate_reused" not in other.manifest.build and other.gate.max_drop == 0.5
