"""``mait-deploy app``: a ready CMake project that runs one bundle natively (mait_deploy/native: the C++ runner
library, the example app, the self-test CTest runs, a benchmark), with the bundle beside it. Needs no runtime
and no compiler here: the project builds on the device against the runtime's own SDK.

    mait-deploy app BUNDLE -o DIR
    cmake -S DIR -B DIR/build && cmake --build DIR/build && ctest --test-dir DIR/build
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from mait_deploy._assets import ASSETS
from mait_deploy._io import atomic_dir, check_output
from mait_deploy.device.bundle import check_files
from mait_deploy.device.manifest import MANIFEST_FILE, read_manifest
from mait_deploy.errors import BundleError, UnsupportedOption

NATIVE_SOURCES = Path(__file__).resolve().parent.parent / "native"
SOURCE_ITEMS = ("CMakeLists.txt", "cmake", "include", "src", "apps")
MARKER = ".mait-app.json"  # what --force checks before it replaces a folder
NATIVE_RUNTIMES = ("onnxruntime", "openvino")
# Why a runtime has no native project yet, and what a user of that device does instead.
NOT_NATIVE = {
    "litert": "LiteRT has no C/C++ SDK to build against (ai-edge-litert ships libLiteRt.so without headers and no "
              "package index has them): on a Raspberry Pi run this bundle with the Python device side "
              "(mait-deploy verify/predict), or generate the app for an ONNX Runtime bundle of the model",
    "tensorrt": "the native runner has no TensorRT backend yet (TensorRT's SDK comes with JetPack and could not be "
                "built against here): on a Jetson run this bundle with the Python device side "
                "(mait-deploy build-engine, verify, predict)",
}
BUILD = "cmake -S {dir} -B {dir}/build && cmake --build {dir}/build -j && ctest --test-dir {dir}/build"


@dataclass
class NativeApp:
    folder: str
    bundle: str
    runtime: str
    precision: str
    build: str  # the commands that build and self-test it

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def app_ownership(folder: Path) -> str | None:
    """None when ``folder`` is a project this command wrote (its marker is there)."""
    return None if (folder / MARKER).is_file() else f"no {MARKER}"


def generate_app(bundle: str | Path, out: str | Path, force: bool = False) -> NativeApp:
    """Write the native project for ``bundle`` to ``out`` (the bundle checked first: a tampered one is refused)."""
    bundle, out = Path(bundle), Path(out)
    manifest = read_manifest(bundle)
    runtime = manifest.runtime.name
    if runtime not in NATIVE_RUNTIMES:
        raise UnsupportedOption(f"no native app for {runtime} bundles: {NOT_NATIVE.get(runtime, 'unknown runtime')}")
    if manifest.golden.arrays is None:
        raise BundleError(f"{bundle} stores its golden set as {manifest.golden.file} (manifest schema "
                          f"{manifest.schema_version}); the native runner reads schema 3's golden.bin: rebuild the "
                          f"bundle with this mait-deploy")
    check_files(bundle, manifest)
    if not NATIVE_SOURCES.is_dir():
        raise BundleError(f"the native sources are missing from this install ({NATIVE_SOURCES})")
    check_output(out, force, kind="dir", ours=app_ownership, what="native app")
    with atomic_dir(out) as staging:
        for item in SOURCE_ITEMS:
            source = NATIVE_SOURCES / item
            if source.is_dir():
                shutil.copytree(source, staging / item)
            else:
                shutil.copy2(source, staging / item)
        shutil.copy2(ASSETS / "manifest.schema.json", staging / "manifest.schema.json")
        (staging / "bundle").mkdir()
        for name, _ in [*manifest.entries(), (MANIFEST_FILE, "")]:
            target = staging / "bundle" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, target)
        (staging / MARKER).write_text(json.dumps({"tool": "mait-deploy app", "bundle": str(bundle),
                                                  "runtime": runtime}, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_readme(manifest.target, manifest.precision, runtime), encoding="utf-8")
    return NativeApp(folder=str(out), bundle=str(bundle), runtime=runtime, precision=manifest.precision,
                     build=BUILD.format(dir=out))


SDK_HINTS = {
    "onnxruntime": "ONNX Runtime's C API: `apt-get install libonnxruntime-dev` (Debian trixie, Raspberry Pi OS), or "
                   "set `ONNXRUNTIME_ROOT` to a folder with `include/onnxruntime` (the library may come from "
                   "`pip install onnxruntime`, whose wheel holds it)",
    "openvino": "OpenVINO's C++ SDK: `pip install openvino==2026.4.1` (its wheel ships the headers and "
                "`OpenVINOConfig.cmake`), or set `OpenVINO_DIR`",
}


def _readme(target: str, precision: str, runtime: str) -> str:
    return f"""# Native runner for a {target} {precision.upper()} bundle

Generated by `mait-deploy app`. `bundle/` is the bundle; the rest is the native runner (C++17, CMake).

Needs: a C++17 compiler, CMake >= 3.19, `apt-get install nlohmann-json3-dev libvalijson-dev libstb-dev libssl-dev`,
and {SDK_HINTS[runtime]}.

```bash
cmake -S . -B build && cmake --build build -j && ctest --test-dir build   # builds, then checks the golden set
build/mait-classify bundle IMAGE_OR_FOLDER...                            # one line per image
build/mait-bench bundle --batch 1                                         # p50, runtime call, overhead, peak RSS
```

`include/mait/mait.hpp` is the library an app links (`mait::runner`); `apps/classify.cpp` is the example.
Build with `-DMAIT_SANITIZE=ON` for AddressSanitizer + UndefinedBehaviorSanitizer.
"""
