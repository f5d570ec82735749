"""What a native build needs on this machine, and the build itself (the commands a user types, in a subprocess).

ONNX Runtime's C API headers come from Debian trixie's libonnxruntime-dev: installed (/usr/include/onnxruntime),
under ONNXRUNTIME_ROOT, or unpacked by tools/fetch-onnxruntime-headers into ~/.cache/mait-deploy/sdk/onnxruntime.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ORT_HEADERS_CACHE = Path.home() / ".cache" / "mait-deploy" / "sdk" / "onnxruntime" / "usr"
# Headers of the libraries every native build needs, and the Debian package that has each.
SYSTEM_HEADERS = {"nlohmann/json.hpp": "nlohmann-json3-dev", "valijson/validator.hpp": "libvalijson-dev",
                  "stb/stb_image.h": "libstb-dev", "jpeglib.h": "libjpeg-dev", "openssl/evp.h": "libssl-dev"}
BUILD_TIMEOUT = 900  # seconds: an ASan build of the OpenVINO runner takes ~2 minutes on 2 cores


def onnxruntime_root() -> Path | None:
    """A prefix with include/onnxruntime/onnxruntime_cxx_api.h, or None (then the build finds the system's)."""
    for root in (os.environ.get("ONNXRUNTIME_ROOT"), ORT_HEADERS_CACHE):
        if root and (Path(root) / "include" / "onnxruntime" / "onnxruntime_cxx_api.h").is_file():
            return Path(root)
    return None


# The Python package whose wheel holds a runtime's native library, where it is not named as the runtime.
PYTHON_PACKAGES = {"litert": "ai_edge_litert"}


def missing(runtime: str) -> str | None:
    """Why a native build for ``runtime`` cannot run here (None: it can)."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install cmake g++)"
    absent = [package for header, package in SYSTEM_HEADERS.items() if not Path("/usr/include", header).is_file()]
    if absent:
        return f"native build dependencies missing: apt-get install {' '.join(absent)}"
    package = PYTHON_PACKAGES.get(runtime, runtime)
    if importlib.util.find_spec(package) is None:
        return f"the {package} Python package (its library) is not installed"
    if runtime == "executorch" and cmake_version() < (3, 28):
        return "ExecuTorch's CMake package needs CMake >= 3.28 (pip install cmake)"
    if runtime == "onnxruntime" and onnxruntime_root() is None \
            and not Path("/usr/include/onnxruntime/onnxruntime_cxx_api.h").is_file():
        return ("ONNX Runtime's C API headers are missing: apt-get install libonnxruntime-dev (Debian trixie), "
                "or run tools/fetch-onnxruntime-headers")
    return None


def cmake_version() -> tuple[int, ...]:
    done = subprocess.run(["cmake", "--version"], capture_output=True, text=True, timeout=60)
    words = done.stdout.split()
    return tuple(int(part) for part in words[2].split(".")[:2]) if len(words) > 2 else (0,)


@functools.cache
def compiler_cache() -> Path | None:
    """One ccache folder for this test session (in the temp folder, removed at exit), or None without ccache.
    The runner's own objects are the same for every runtime (CMakeLists.txt: mait_core), so the suite's builds of
    four runtimes, each a generated project in its own folder, compile them once per build type. With
    ``MAIT_TEST_CCACHE`` set to a folder (.ci/run sets one for its whole run), the default and the slow suite share
    it and it is left to its owner."""
    if shutil.which("ccache") is None:
        return None
    shared = os.environ.get("MAIT_TEST_CCACHE")
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
        return Path(shared)
    folder = Path(tempfile.mkdtemp(prefix="mait-ccache-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build_env() -> dict[str, str]:
    env = dict(os.environ)
    root = onnxruntime_root()
    if root is not None:
        env["ONNXRUNTIME_ROOT"] = str(root)
    cache = compiler_cache()
    if cache is not None:
        # Paths under the temp folder hashed relative to the build folder: two generated projects hit each other.
        env.update(CCACHE_DIR=str(cache), CCACHE_BASEDIR=tempfile.gettempdir(), CCACHE_NOHASHDIR="1")
    return env


def build(project: Path, build_dir: Path, *options: str, targets: tuple[str, ...] = ()) -> Path:
    """cmake -S project -B build_dir [options] && cmake --build build_dir [--target T...]: the user's commands,
    with the runner's warnings as errors (MAIT_WERROR, off in a user's build) and ccache where installed. Returns
    build_dir."""
    launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if compiler_cache() is not None else []
    for command in (["cmake", "-S", str(project), "-B", str(build_dir), "-DMAIT_WERROR=ON", *launcher, *options],
                    ["cmake", "--build", str(build_dir), "-j", "2", *(["--target", *targets] if targets else [])]):
        done = subprocess.run(command, capture_output=True, text=True, env=build_env(), timeout=BUILD_TIMEOUT)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return build_dir
