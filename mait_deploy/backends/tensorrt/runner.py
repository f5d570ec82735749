"""TensorRT on the device (Jetson, NVIDIA GPUs): build the engine from the bundle's ONNX, cache it, run it.

No torch: TensorRT's Python API and CUDA buffers through cuda-python. An engine is specific to the GPU and the
TensorRT version, so the cache key covers GPU name + compute capability, TensorRT version, ONNX sha256,
precision and the build plan; a stale or foreign cache entry is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mait_deploy._deps import require
from mait_deploy._io import atomic_path, sha256_file
from mait_deploy.device.manifest import check_files, read_manifest
from mait_deploy.device.runner import Runner
from mait_deploy.errors import MaitDeployError, MissingDependency
from mait_deploy.options import Option

CACHE_DIR = "engine_cache"

# No extra brings TensorRT itself: where it comes from, for the one-line error.
TENSORRT_SOURCE = ("TensorRT comes with NVIDIA JetPack on a Jetson (a venv made with --system-site-packages sees it) "
                   "or NVIDIA's tensorrt wheel on an x86-64 GPU machine; the 'tensorrt' extra adds cuda-python only")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def cache_key(gpu: GpuInfo, trt_version: str, onnx_sha256: str, plan: dict[str, Any]) -> str:
    """A stable key for everything that makes an engine valid on this device."""
    payload = json.dumps({"gpu": gpu.name, "cc": gpu.compute_capability, "trt": trt_version, "onnx": onnx_sha256,
                          "plan": plan}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cached_engine(cache: Path, key: str, expected: dict[str, Any]) -> Path | None:
    """The cached engine for ``key`` if its metadata matches and its bytes are intact; None otherwise."""
    engine, meta = cache / f"{key}.engine", cache / f"{key}.json"
    if not engine.is_file() or not meta.is_file():
        return None
    try:
        recorded = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if recorded.get("identity") != expected or recorded.get("engine_sha256") != sha256_file(engine):
        return None
    return engine


def _cuda():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as err:
            raise MissingDependency("cuda-python", extra="tensorrt", detail="CUDA buffers without torch") from err
    return cudart


def _check(result: Any) -> Any:
    error, *rest = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise MaitDeployError(f"CUDA call failed: {error}")
    return rest[0] if len(rest) == 1 else rest


def gpu_info(cudart: Any) -> GpuInfo:
    count = _check(cudart.cudaGetDeviceCount())
    if count < 1:
        raise MaitDeployError("no NVIDIA GPU found: TensorRT bundles run on Jetson or NVIDIA GPUs")
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name=name.strip("\x00 "), compute_capability=f"{props.major}.{props.minor}")


def build_engine(trt: Any, onnx_path: Path, plan: dict[str, Any], timing_cache: Path | None = None) -> bytes:
    """Build a serialized engine with the TensorRT Python API: builder, network from the ONNX parser, builder
    config (precision, workspace, optimization level, DLA), one optimization profile, timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    has_precision_flags = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 11 builds strongly typed networks only
    onnx_file = onnx_path
    flags = 0
    if not has_precision_flags:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if plan["precision"] == "fp16":
            if not plan.get("onnx_strongly_typed_fp16"):
                raise MaitDeployError("this TensorRT needs an FP16-typed ONNX; rebuild the bundle with mait-deploy")
            onnx_file = onnx_path.parent / plan["onnx_strongly_typed_fp16"]
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_file.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MaitDeployError(f"TensorRT could not parse {onnx_file.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan["workspace_mb"]) << 20)
    config.builder_optimization_level = int(plan["builder_optimization_level"])
    if has_precision_flags and plan["precision"] in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if has_precision_flags and plan["precision"] == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ: no calibrator is set
    if plan.get("dla_core") is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan["dla_core"])
        if plan.get("gpu_fallback", True):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    sample = tuple(plan["sample_shape"])
    profile.set_shape(plan["input_name"], (plan["min_batch"], *sample), (plan["opt_batch"], *sample),
                      (plan["max_batch"], *sample))
    config.add_optimization_profile(profile)
    cache = None
    if plan.get("timing_cache", True) and timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MaitDeployError("TensorRT failed to build the engine (see the TensorRT log above)")
    if cache is not None:
        with atomic_path(timing_cache) as temp:
            temp.write_bytes(bytes(cache.serialize()))
    return bytes(serialized)


def ensure_engine(bundle_dir: Path, manifest: Any, trt: Any, gpu: GpuInfo, force: bool = False) -> tuple[Path, bool]:
    """The cached engine for this bundle on this device, building it when missing, stale or foreign.
    Returns (engine path, whether it was built now)."""
    plan = manifest.runtime.options["plan"]
    identity = {"gpu": gpu.name, "compute_capability": gpu.compute_capability, "tensorrt": trt.__version__,
                "onnx_sha256": manifest.artifact.sha256, "precision": manifest.precision, "plan": plan}
    key = cache_key(gpu, trt.__version__, manifest.artifact.sha256, plan)
    cache = bundle_dir / CACHE_DIR
    engine = None if force else cached_engine(cache, key, identity)
    if engine is not None:
        return engine, False
    cache.mkdir(exist_ok=True)
    started = time.perf_counter()
    data = build_engine(trt, bundle_dir / manifest.artifact.path, plan, cache / "timing.cache")
    engine = cache / f"{key}.engine"
    with atomic_path(engine) as temp:
        temp.write_bytes(data)
    with atomic_path(cache / f"{key}.json") as temp:
        temp.write_text(json.dumps({"identity": identity, "engine_sha256": sha256_file(engine),
                                    "build_seconds": round(time.perf_counter() - started, 1)}, indent=2))
    return engine, True


class TensorRtRunner(Runner):
    layer_profiler_missing = ("on the Jetson, trtexec --loadEngine=ENGINE --dumpProfile --separateProfileRun gives "
                              "TensorRT's per-layer times")
    cache_dirs = (CACHE_DIR,)
    declared_options = (Option("plan", dict, None, "recorded by the build: what the engine is built with (BuildPlan)"),)

    def _load(self) -> None:
        trt = require("tensorrt", extra="tensorrt", hint=TENSORRT_SOURCE)
        cudart = _cuda()
        self._cudart = cudart
        gpu = gpu_info(cudart)
        self._engine_path, self._built = ensure_engine(self.bundle_dir, self.manifest, trt, gpu)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(self._engine_path.read_bytes())
        if self._engine is None:
            raise MaitDeployError(f"TensorRT could not load {self._engine_path}; delete it to rebuild")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate())
        plan = self.manifest.runtime.options["plan"]
        self._max_batch = int(plan["max_batch"])
        classes = int(self.manifest.model["num_classes"])
        self._in_bytes = self._max_batch * int(np.prod(self.sample_shape)) * 4
        self._out_bytes = self._max_batch * classes * 4
        self._d_in = _check(cudart.cudaMalloc(self._in_bytes))
        self._d_out = _check(cudart.cudaMalloc(self._out_bytes))
        self._output_name = self.manifest.outputs[0].name
        self._gpu = gpu

    def _backend_batch_limit(self) -> int:
        # The optimization profile's max (the device buffers are sized for it); known before the engine loads.
        return int(self.manifest.runtime.options["plan"]["max_batch"])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        count = len(batch)
        self._context.set_input_shape(self.input_name, batch.shape)
        self._context.set_tensor_address(self.input_name, int(self._d_in))
        self._context.set_tensor_address(self._output_name, int(self._d_out))
        kind = cudart.cudaMemcpyKind
        _check(cudart.cudaMemcpyAsync(self._d_in, batch.ctypes.data, batch.nbytes,
                                      kind.cudaMemcpyHostToDevice, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise MaitDeployError("TensorRT execution failed")
        out = np.empty((count, int(self.manifest.model["num_classes"])), dtype=np.float32)
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._d_out, out.nbytes, kind.cudaMemcpyDeviceToHost,
                                      self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return out

    def _close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is not None:
            for pointer in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
                if pointer is not None:
                    cudart.cudaFree(pointer)
            if getattr(self, "_stream", None) is not None:
                cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = None

    def runtime_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"runtime": self.runtime_name}
        if self.is_active:
            import tensorrt as trt

            info.update(version=trt.__version__, gpu=self._gpu.name, compute_capability=self._gpu.compute_capability,
                        engine=str(self._engine_path), engine_built_now=self._built)
        return info


def build_engine_for_bundle(bundle: str | Path, force: bool = False) -> dict[str, Any]:
    """``mait-deploy build-engine``: build (or reuse) the cached engine of a TensorRT bundle on this device."""

    folder = Path(bundle)
    manifest = read_manifest(folder)
    if manifest.target != "tensorrt":
        raise MaitDeployError(f"{folder} is a {manifest.target} bundle; build-engine is for tensorrt bundles")
    check_files(folder, manifest)
    trt = require("tensorrt", extra="tensorrt", hint=TENSORRT_SOURCE)
    gpu = gpu_info(_cuda())
    started = time.perf_counter()
    engine, built = ensure_engine(folder, manifest, trt, gpu, force=force)
    return {"engine": str(engine), "built": built, "seconds": round(time.perf_counter() - started, 1),
            "gpu": gpu.name, "compute_capability": gpu.compute_capability, "tensorrt": trt.__version__}
