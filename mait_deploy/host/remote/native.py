"""The native runner on a board (`remote profile --native`): the runner's sources pushed once per board
(content-addressed), built there with CMake against the board's own SDK (as a user of the board installs it:
`apt-get install g++ cmake libonnxruntime-dev ...`, OpenVINO's from the board's venv), then for each bundle its
golden self-test and a profile (mait-bench): one more row per bundle in the fleet report."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from mait_deploy import backends
from mait_deploy._assets import ASSETS
from mait_deploy.device.native_app import native_items, native_runtimes
from mait_deploy.device.native_library import LIBRARY_ENV, LIBRARY_NAME
from mait_deploy.device.profiling.stats import Latency
from mait_deploy.errors import RemoteError
from mait_deploy.host.remote.ssh import Board, last_line
from mait_deploy.results import BundleRun, Memory, Verified, batch_key
from mait_deploy.typed_json import decode

BUILD_TIMEOUT_S = 3600.0  # a compile under emulation (the arm64 fixture) takes minutes per runtime
BUILT = ".mait-built"  # written into a build folder once its build succeeded
# What a board runs: the self-test and the profiler (native rows) and the C ABI library (a device side that runs
# its bundles through the native runner); the example apps are a user's to build.
BOARD_TARGETS = ("mait-selftest", "mait-bench", "mait_runner_c")


@dataclass(frozen=True)
class NativeBench:
    """What ``mait-bench`` prints (native/apps/bench.cpp), read strictly."""

    runtime: str
    batch: int
    iterations: int
    p50_ms: float
    p99_ms: float
    runtime_call_p50_ms: float  # the runtime call alone
    overhead: float  # p50 / runtime call p50 - 1: the runner's own share
    throughput: float
    peak_rss_mb: float


def source_files() -> dict[str, Path]:
    """Relative path -> file, of everything the native project is made of (the schema included)."""

    files = {}
    for item, path in native_items().items():
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            if "__pycache__" not in file.parts:
                files[str(Path(item) / file.relative_to(path)) if path.is_dir() else item] = file
    files["manifest.schema.json"] = ASSETS / "manifest.schema.json"
    return files


@functools.cache
def _sources() -> tuple[dict[str, Path], str]:
    """The source files and their key, read once per process (the fleet builds every bundle from the same)."""
    files = source_files()
    return files, sources_key(files)


def sources_key(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()[:20]


async def ensure_built(board: Board, work: PurePosixPath, runtime: str, python: str,
                       temporaries: list[str]) -> tuple[PurePosixPath, float]:
    """The board's build folder of the native runner for ``runtime`` (pushed and built when missing) and the
    seconds it took here (0 when an earlier run had built it)."""
    if runtime not in native_runtimes():
        raise RemoteError(f"no native runner for {runtime}")
    files, key = _sources()
    source = work / "native" / key
    clock = time.perf_counter()
    if not await board.exists(str(source)):
        partial = f"{source}.partial-{secrets.token_hex(4)}"
        temporaries.append(partial)
        for name in sorted({str(PurePosixPath(partial, n).parent) for n in files}):
            await board.run(["mkdir", "-p", name], what="creating the native source folder")
        for name, path in files.items():
            await board.put(path, str(PurePosixPath(partial, name)))
        await board.run(["mv", "-T", partial, str(source)], what="committing the native sources")
        temporaries.remove(partial)
    build = source / f"build-{runtime}"
    if await board.exists(str(build / BUILT)):
        return build, 0.0
    # The board's SDK: ONNX Runtime from the system (libonnxruntime-dev), OpenVINO from the board's venv, whose
    # python CMake asks by an absolute path (a workdir is relative to the login's home), as ccache its folder (a
    # compiler runs in the build folder).
    if not PurePosixPath(python).is_absolute() or not work.is_absolute():
        home = PurePosixPath((await board.run(["sh", "-c", 'printf "%s" "$PWD"'],
                                              what="asking for the home folder")).stdout.strip())
        python, work = str(home / python), home / work
    # The venv's CMake where a runtime's extra brought one (ExecuTorch's package needs >= 3.28; a bookworm board
    # has 3.25), else the board's.
    venv_cmake = str(PurePosixPath(python).parent / "cmake")
    cmake = venv_cmake if await board.exists(venv_cmake) else "cmake"
    # A board with ccache compiles the runner's own code (the same for every runtime) once, not once per runtime:
    # under emulation that is minutes. Its cache stays in the workdir, beside the builds it serves, unless the
    # board's login names one (CCACHE_DIR): then the cache the board's owner chose, e.g. one shared by a fleet.
    probe = await board.run(["sh", "-c", 'command -v ccache >/dev/null && printf "%s" "${CCACHE_DIR:-}"'],
                            check=False, what="looking for ccache")
    cached = probe.exit_status == 0
    own_cache = probe.stdout.strip() if cached else ""
    # Paths under the workdir enter the cache relative (CCACHE_BASEDIR): without it a build in another workdir
    # (another board on the shared cache, another token) finds nothing, as every path in its objects differs.
    env = ["env", f"CCACHE_DIR={own_cache or work / 'native' / 'ccache'}", f"CCACHE_BASEDIR={work}"] if cached else []
    launcher = ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"] if cached else []
    for step, argv in (("configuring", [cmake, "-S", str(source), "-B", str(build), f"-DMAIT_RUNTIME={runtime}",
                                        "-DCMAKE_BUILD_TYPE=Release", f"-DPython3_EXECUTABLE={python}", *launcher]),
                       ("building", [cmake, "--build", str(build), "-j", "2", "--target", *BOARD_TARGETS])):
        done = await board.run(env + argv, timeout=BUILD_TIMEOUT_S, check=False,
                               what=f"{step} the native {runtime} runner")
        if done.exit_status != 0:
            raise RemoteError(f"{step} the native {runtime} runner failed: {first_error(done.stdout + done.stderr)}")
    await board.run(["touch", str(build / BUILT)], what="marking the native build")
    return build, round(time.perf_counter() - clock, 2)


async def device_environment(board: Board, runtime: str, work: PurePosixPath, python: str, temporaries: list[str],
                             steps: dict[str, float]) -> list[str]:
    """``env`` arguments for a board job: where a backend's device runs its bundles through the native runner's
    library, that library, built on the board when missing (``steps["native_build"]``: the seconds it took)."""

    if not backends.get(runtime).device.runs_native:
        return []
    build, steps["native_build"] = await ensure_built(board, work, runtime, python, temporaries)
    return ["env", f"{LIBRARY_ENV}={build / LIBRARY_NAME}"]


def first_error(output: str) -> str:
    """The line of a CMake or compiler run that says what went wrong (not make's closing 'Error 2')."""
    lines = [line.strip() for line in output.splitlines()]
    tests: tuple[Callable[[str], bool], ...] = (
        lambda t: t.startswith("CMake Error") or ": error:" in t or "fatal error" in t,
        lambda t: "error" in t.lower() and not t.startswith(("gmake", "make", "--")))
    for wanted in tests:
        for index, text in enumerate(lines):
            if wanted(text):
                # CMake puts the message on the lines after "CMake Error at FILE:LINE (message):".
                detail = " ".join(line for line in lines[index + 1:index + 4] if line) \
                    if text.startswith("CMake Error") else ""
                return f"{text} {detail}".strip()[:400]
    return last_line(output) or "no output"


async def native_on_board(board: Board, build: PurePosixPath, bundle_remote: str, row: BundleRun,
                          options: Any, trust: str | None = None) -> None:
    """The golden self-test, then a profile at the first batch size; fills ``row`` (a board's BundleRun). ``trust``: the
    public key (a path on the board) the bundle must be signed with."""
    assert row.board is not None
    threads = ["--threads", str(options.threads)] if options.threads else []
    if trust is not None:
        threads += ["--trust", trust]
    clock = time.perf_counter()
    done = await board.run([str(build / "mait-selftest"), bundle_remote, *threads], check=False,
                           what="the native self-test")
    row.board.steps["selftest"] = round(time.perf_counter() - clock, 2)
    if done.exit_status != 0:
        raise RemoteError(f"native self-test: {last_line(done.stderr) or f'exit {done.exit_status}'}")
    lines = done.stdout.strip().splitlines()
    row.verify = Verified(passed=True, message=lines[-1] if lines else "",
                          runtime=lines[0].split(": ", 1)[-1] if lines else "")
    batch = options.batches[0]
    clock = time.perf_counter()
    done = await board.run([str(build / "mait-bench"), bundle_remote, "--batch", str(batch), "--iterations",
                            str(options.iterations or 100), "--warmup", str(options.warmup), *threads],
                           check=False, what="the native profile")
    row.board.steps["profile"] = round(time.perf_counter() - clock, 2)
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = None
    if done.exit_status != 0 or not isinstance(report, dict):
        raise RemoteError(f"native profile: {last_line(done.stderr) or f'exit {done.exit_status}'}")
    bench = decode(NativeBench, report, "the native runner's profile")
    row.latency = {batch_key(batch): Latency(batch=batch, p50_ms=round(bench.p50_ms, 4),
                                             p99_ms=round(bench.p99_ms, 4), throughput=round(bench.throughput, 2))}
    row.memory = Memory(peak_rss_mb=round(bench.peak_rss_mb, 1))
    row.board.runtime_call_p50_ms, row.board.overhead = bench.runtime_call_p50_ms, bench.overhead
