"""``remote setup``: a venv on each board with the device side of mait-deploy and the board's runtimes, never torch.

The package is a wheel built from this checkout on the host (or one given). ``install: index`` boards run pip
against their own package index; ``install: push`` boards (no network, or pip too slow there) get a site-packages
tree the host resolves for the board's platform (``pip install --platform ... --only-binary=:all: --target``) and
pushes as one archive. A stamp in the venv (wheel hash, runtimes, mode) makes a re-run skip a board that is current.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from mait_deploy import backends
from mait_deploy._io import content_key
from mait_deploy.errors import RemoteError, ValidationError, failure_line
from mait_deploy.host.remote.inventory import Device
from mait_deploy.host.remote.parallel import run_on_devices
from mait_deploy.host.remote.ssh import Board
from mait_deploy.typed_json import decode

STAMP = "mait-deploy-setup.json"
_PLATFORM_SNIPPET = ("import json, platform, sys; print(json.dumps({'machine': platform.machine(), "
                     "'python': '%d.%d' % sys.version_info[:2], 'libc': platform.libc_ver()[1]}))")


@dataclass(frozen=True)
class BoardPlatform:
    """What _PLATFORM_SNIPPET prints on a board (read strictly)."""

    machine: str
    python: str  # "3.11"
    libc: str  # glibc's version, "" where it is not glibc


@dataclass
class SetupResult:
    device: str
    status: str  # installed | up to date | failed
    reason: str = ""
    board: dict[str, object] = field(default_factory=dict)  # the probe: machine, python, runtimes and versions
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step
    new_host_key: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# What a wheel is built from: copied out of the user's checkout, so that the build's own folders (build/,
# *.egg-info) are written beside the copy, never into the checkout.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "mait_deploy")
_NOT_SOURCES = ("__pycache__", "*.pyc", "*.egg-info", "build", ".mait-tmp-*")


def build_wheel(out_dir: Path) -> Path:
    """Build mait-deploy's wheel from the checkout this package runs from (pip wheel, no dependencies), in a copy
    of its sources under ``out_dir``: nothing is written into the checkout."""
    import shutil

    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file() or not (root / "mait_deploy").is_dir():
        raise RemoteError("mait-deploy is not running from a source checkout; build a wheel there "
                          "(pip wheel --no-deps .) and pass it with --wheel")
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (root / name).is_dir():
            shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns(*_NOT_SOURCES), symlinks=False)
        elif (root / name).is_file():
            shutil.copy2(root / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--disable-pip-version-check", "-w", str(out_dir), str(source)],
                          capture_output=True, text=True, cwd=out_dir)
    wheels = sorted(out_dir.glob("mait_deploy-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = failure_line(done.stderr, "no wheel was written")
        raise RemoteError(f"building the mait-deploy wheel failed: {reason}")
    return wheels[-1]


def wheel_identity(wheel: Path) -> str:
    """A hash of the wheel's files (names and bytes), not of the zip: a rebuild of the same checkout has new
    timestamps in the zip but the same identity, so a board that has it is left alone."""
    import zipfile

    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in sorted(archive.namelist()):
                digest.update(name.encode() + b"\0" + hashlib.sha256(archive.read(name)).digest())
    except zipfile.BadZipFile:
        raise RemoteError(f"{wheel} is not a wheel (not a zip file)") from None
    return digest.hexdigest()


def board_platforms(machine: str, libc: str) -> list[str]:
    """pip --platform tags a board with this glibc accepts, newest first."""
    try:
        major, minor = (int(part) for part in libc.split(".")[:2])
    except ValueError:
        raise RemoteError(f"the board's C library {libc!r} is not glibc; resolve its wheels on the board "
                          "(install: index)") from None
    if major != 2 or minor < 17:
        raise RemoteError(f"glibc {libc} is older than manylinux2014 (2.17)")
    return [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)] + [f"manylinux2014_{machine}"]


def resolve_site_packages(wheel: Path, runtimes: Sequence[str], board: BoardPlatform, cache: Path) -> Path:
    """A .tar.gz of site-packages for the board's platform (cached per wheel, runtimes and platform)."""
    key = content_key([wheel_identity(wheel), sorted(runtimes), board.machine, board.python, board.libc])[:16]
    archive = cache / f"site-{key}.tar.gz"
    if archive.is_file():
        return archive
    version = board.python.replace(".", "")
    target = Path(tempfile.mkdtemp(prefix="site-", dir=cache))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--only-binary=:all:", "--python-version", board.python, "--implementation", "cp",
               "--abi", f"cp{version}", "--target", str(target)]
    for tag in board_platforms(board.machine, board.libc):
        command += ["--platform", tag]
    sdk_wheels = runtime_sdk_wheels(runtimes)
    try:
        for requirements in [[f"{wheel}[{','.join(runtime_extras(runtimes))}]"]] + (
                [["--no-deps", *sdk_wheels]] if sdk_wheels else []):
            done = subprocess.run(command + requirements, capture_output=True, text=True)
            if done.returncode != 0:
                reason = failure_line(done.stderr, "pip failed")
                raise RemoteError(f"resolving wheels for {board.machine} / Python {board.python} failed: "
                                  f"{reason}")
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            for entry in sorted(target.iterdir()):
                tar.add(entry, arcname=entry.name)
        partial.replace(archive)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return archive


def runtime_extras(runtimes: Sequence[str]) -> list[str]:
    """The pip extras a board installs: these backends' device runtimes, and signing (`--trust` on the board)."""
    return sorted({backends.get(name).device.extra for name in runtimes} | {"signing"})


def runtime_sdk_wheels(runtimes: Sequence[str]) -> list[str]:
    """The requirements these backends' devices install without their dependencies (a runtime's SDK wheel)."""
    return sorted({wheel for name in runtimes for wheel in backends.get(name).device.sdk_wheels})


def _probe_report(stdout: str) -> dict[str, object]:
    """The probe's JSON line. A runtime's native library may write to stdout too (once, under qemu, a line came
    after the report): the report is the line that parses as the probe's object."""
    for line in stdout.splitlines():
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict) and "runtimes" in report and "machine" in report:
            return report
    raise RemoteError(f"the board's probe printed no report: {stdout.strip()[:300]!r}")


def _read_stamp(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # a damaged stamp means: not set up
        return None


def _wanted_stamp(wheel_sha: str, device: Device) -> dict[str, object]:
    return {"wheel_sha256": wheel_sha, "runtimes": sorted(device.runtimes), "install": device.install}


async def setup_device(device: Device, wheel: Path, cache: Path, accept_new: bool = False,
                       force: bool = False, resolving: asyncio.Lock | None = None) -> SetupResult:
    """Install (or confirm) the device side and its runtimes on one board."""
    result = SetupResult(device=device.name, status="failed")
    steps = result.steps
    work = PurePosixPath(device.workdir)
    venv, python = work / "venv", str(work / "venv" / "bin" / "python")
    wheel_sha = wheel_identity(wheel)
    started = time.perf_counter()
    board = await Board.open(device, accept_new=accept_new)
    result.new_host_key = board.new_host_key
    temporaries: list[str] = []
    finished = touched = False
    async with board:
        try:
            steps["connect"] = round(time.perf_counter() - started, 2)
            platform_run = await board.run([device.python, "-c", _PLATFORM_SNIPPET], what="probing Python")
            try:
                facts = decode(BoardPlatform, json.loads(platform_run.stdout), f"{device.name}'s platform")
            except (json.JSONDecodeError, ValidationError) as err:
                raise RemoteError(f"{device.name}: {device.python} printed no platform report ({err})") from None
            if tuple(int(p) for p in facts.python.split(".")) < (3, 10):
                raise RemoteError(f"{device.name}: {device.python} is Python {facts.python}; "
                                  "mait-deploy needs 3.10 or newer (set 'python' in the inventory)")
            stamp = await board.run(["cat", str(venv / STAMP)], check=False, what="reading the set-up stamp")
            wanted = _wanted_stamp(wheel_sha, device)
            current = stamp.exit_status == 0 and not force and _read_stamp(stamp.stdout) == wanted
            if not current:
                touched = True
                await board.run(["mkdir", "-p", str(work / "wheels")], what="creating the work folder")
                await board.run(["chmod", "700", str(work)], what="protecting the work folder")
                await board.run(["rm", "-rf", "--", str(venv)], what="removing the old venv")
                await _install(board, device, wheel, cache, facts, steps, temporaries, resolving or asyncio.Lock())
            clock = time.perf_counter()
            probe = await board.run([python, "-m", "mait_deploy.device.probe", *device.runtimes],
                                    what="checking the runtimes")
            steps["check"] = round(time.perf_counter() - clock, 2)
            result.board = _probe_report(probe.stdout)
            runtimes = result.board["runtimes"]
            broken = {name: info["error"] for name, info in (runtimes.items() if isinstance(runtimes, dict) else ())
                      if not info["ok"]}
            if broken:
                name, error = next(iter(broken.items()))
                raise RemoteError(f"{device.name}: runtime {name} does not import: {error}")
            if not current:
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(tmp) / STAMP
                    local.write_text(json.dumps(wanted))
                    await board.put(local, str(venv / STAMP))
                await board.run(["chmod", "-R", "go-rwx", str(work)], what="protecting the work folder")
            result.status = "up to date" if current else "installed"
            finished = True
        finally:
            for path in temporaries:
                await board.remove_tree(path)
            if touched and not finished:
                await board.remove_tree(str(venv))  # a half-built venv is never left to look installed
    steps["total"] = round(time.perf_counter() - started, 2)
    return result


async def _install(board: Board, device: Device, wheel: Path, cache: Path, facts: BoardPlatform,
                   steps: dict[str, float], temporaries: list[str], resolving: asyncio.Lock) -> None:
    work = PurePosixPath(device.workdir)
    venv = work / "venv"
    system_runtime = any(backends.get(r).device.system_runtime for r in device.runtimes)
    system_site = ["--system-site-packages"] if system_runtime else []
    clock = time.perf_counter()
    if device.install == "index":
        await board.run([device.python, "-m", "venv", *system_site, str(venv)], what="creating the venv")
        remote_wheel = str(work / "wheels" / wheel.name)
        await board.put(wheel, remote_wheel)
        steps["venv"] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()
        await board.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input",
                         "--disable-pip-version-check", f"{remote_wheel}[{','.join(runtime_extras(device.runtimes))}]"],
                        what="pip install on the board")
        sdk_wheels = runtime_sdk_wheels(device.runtimes)
        if sdk_wheels:
            await board.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input",
                             "--disable-pip-version-check", "--no-deps", *sdk_wheels],
                            what="pip install of the runtimes' SDK wheels on the board")
        steps["install"] = round(time.perf_counter() - clock, 2)
        return
    async with resolving:  # one pip resolution at a time (boards of one platform share it), off the event loop
        archive = await asyncio.to_thread(resolve_site_packages, wheel, device.runtimes, facts, cache)
    steps["resolve"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    await board.run([device.python, "-m", "venv", "--without-pip", *system_site, str(venv)],
                    what="creating the venv")
    remote_archive = str(work / "wheels" / archive.name)
    temporaries.append(remote_archive)
    await board.put(archive, remote_archive)
    steps["push"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    site = venv / "lib" / f"python{facts.python}" / "site-packages"
    await board.run(["tar", "-xzf", remote_archive, "-C", str(site)], what="unpacking the packages")
    steps["install"] = round(time.perf_counter() - clock, 2)


def remote_setup(devices: Sequence[Device], wheel: Path | None = None, accept_new: bool = False,
                 force: bool = False, max_parallel: int = 4, cache_dir: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> list[SetupResult]:
    """Set up every device (in parallel); a failed board gives a failed result with its reason."""
    with tempfile.TemporaryDirectory(prefix="mait-remote-") as tmp:
        cache = Path(cache_dir or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        if wheel is None:
            if progress:
                progress("building the mait-deploy wheel")
            wheel = build_wheel(Path(tmp) / "wheel")
        elif not Path(wheel).is_file() or not str(wheel).endswith(".whl"):
            raise RemoteError(f"--wheel {wheel}: not a wheel file")

        resolving: list[asyncio.Lock] = []  # created inside the run's event loop

        async def job(device: Device) -> SetupResult:
            if not resolving:
                resolving.append(asyncio.Lock())
            if progress:
                progress(f"setting up {device.name}")
            return await setup_device(device, Path(wheel), cache, accept_new=accept_new, force=force,
                                      resolving=resolving[0])

        return run_on_devices(devices, job, lambda device, reason: SetupResult(device.name, "failed", reason),
                              max_parallel=max_parallel)
