"""A real arm64 board in all but silicon: a Debian arm64 userland under qemu-user (binfmt) with its own sshd.

Each board is an sshd (arm64 OpenSSH, run by qemu) chrooted into the userland, listening on 127.0.0.1:PORT, in a
private mount namespace with proc, /dev, /sys, a tmpfs /run and a Raspberry Pi 5 /proc/cpuinfo bound over the real one
(onnxruntime's cpuinfo library crashes on the x86 one qemu 7.2 passes through). Killing the board's process group
removes its mounts. The userland (mmdebstrap, trixie, 1.2 GB on disk; 8 to 12 minutes on a quiet 2-core machine,
about twice that beside a test suite) is built once and kept under
``MAIT_ARM64_CACHE`` (default ~/.cache/mait-deploy/arm64); a half-built one is never reused.

The board compiles as a Raspberry Pi OS board does (its cmake, make, ccache, headers and libraries: the native
runner's whole build runs on the board), with one accelerator for the emulation: the compiler is Debian trixie's GCC
14.2 for aarch64 built to run on x86-64 (``gcc-14-aarch64-linux-gnu:amd64``, the same version as the board's own
``g++``, kept in /opt/mait-cross with the amd64 libraries it needs), named by the login's ``CC``/``CXX``. Under qemu
the board's own compiler takes ~10 minutes for the runner; this one runs natively (~1 minute), and its objects are
the same aarch64 code. Scratchbox2 and OBS accelerate foreign-architecture builds the same way.

    python tests/arm64_board.py          # build (or check) the cached userland ahead of the tests

Needs root, qemu-user-static, binfmt-support and mmdebstrap (``.ci/run`` installs them); ``unavailable()`` says why
a machine cannot run it, and the tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "trixie"
MIRROR = os.environ.get("MAIT_ARM64_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("MAIT_ARM64_CACHE", Path.home() / ".cache" / "mait-deploy" / "arm64"))
PACKAGES = "python3,python3-venv,ca-certificates,openssh-server,tar"
# The native runner's SDK as a Raspberry Pi OS (trixie) user installs it: the board builds the app itself.
NATIVE_PACKAGES = "g++,cmake,make,ccache,libonnxruntime-dev,nlohmann-json3-dev,libstb-dev,libjpeg-dev,libssl-dev"
# Header-only, unpacked without its package's dependencies: Debian's libvalijson-dev depends on every JSON library
# valijson has an adapter for (Qt 5, Poco, MariaDB and PostgreSQL clients, Mesa, LLVM: 157 of the 374 packages the
# userland had with it), none of which the runner includes (it uses the nlohmann adapter).
HEADER_PACKAGES = ("libvalijson-dev",)
# The x86-64-hosted cross compiler (see the module's docstring): its shared libraries as multiarch packages apt installs
# beside the arm64 ones; the compiler itself and its target files (which apt cannot pair with an arm64 system: they
# are Architecture: all without Multi-Arch: foreign) unpacked under CROSS_PREFIX.
CROSS_HOST_LIBRARIES = ("libc6:amd64,libstdc++6:amd64,libgmp10:amd64,libisl23:amd64,libmpc3:amd64,libmpfr6:amd64,"
                        "libzstd1:amd64,zlib1g:amd64,libjansson4:amd64,libsframe1:amd64")
CROSS_PACKAGES = ("g++-14-aarch64-linux-gnu:amd64", "gcc-14-aarch64-linux-gnu:amd64", "cpp-14-aarch64-linux-gnu:amd64",
                  "binutils-aarch64-linux-gnu:amd64", "gcc-14-aarch64-linux-gnu-base:amd64",
                  "libstdc++-14-dev-arm64-cross", "libgcc-14-dev-arm64-cross", "libc6-dev-arm64-cross",
                  "libc6-arm64-cross", "linux-libc-dev-arm64-cross", "libstdc++6-arm64-cross", "libgcc-s1-arm64-cross",
                  "libatomic1-arm64-cross")
CROSS_PREFIX = "/opt/mait-cross"
# The login environment of every fixture board: the compilers CMake picks (a C and a C++ one; the multiarch header
# folder of the board's own libraries, e.g. openssl/configuration.h, after the compiler's own).
COMPILERS = {"CC": "/usr/local/bin/mait-fixture-gcc", "CXX": "/usr/local/bin/mait-fixture-g++"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# The Raspberry Pi 5's core, for every process on the board (sshd's SetEnv reaches the sessions). qemu's default
# "max" CPU advertises SVE2/SME/I8MM, and XNNPACK's int8 kernels for those compute wrong logits under qemu 7.2
# (LiteRT INT8 failed `verify`: top-1 agreement 12.5%); as a Cortex-A76 the same bundle is bit-exact.
QEMU_CPU = "cortex-a76"

PI5_CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
    "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for n in range(4)
) + "Revision\t: d04170\nSerial\t\t: 0000000000000000\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)


def ensure_binfmt() -> str | None:
    """Mount binfmt_misc and enable qemu-aarch64; the reason it cannot be done, or None."""
    if os.geteuid() != 0:
        return "the arm64 board fixture needs root (chroot, mounts)"
    for tool in ("qemu-aarch64-static", "update-binfmts", "mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install qemu-user-static binfmt-support mmdebstrap)"
    if not (BINFMT / "register").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            return f"binfmt_misc cannot be mounted here: {done.stderr.strip()}"
    if not (BINFMT / "qemu-aarch64").exists():
        done = subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
        if done.returncode != 0 or not (BINFMT / "qemu-aarch64").exists():
            return f"qemu-aarch64 cannot be registered with binfmt_misc: {done.stderr.strip()}"
    return None


def userland() -> Path:
    """The arm64 root folder, built once (an atomic rename marks it complete)."""
    root = CACHE / "root"
    included = f"{PACKAGES},{NATIVE_PACKAGES},{CROSS_HOST_LIBRARIES}"
    packages = f"{included};cross:{','.join(CROSS_PACKAGES)};headers:{','.join(HEADER_PACKAGES)}"
    stamp = CACHE / "complete"  # the package list it was built with, then the time
    if (root / "usr" / "bin" / "python3").exists() and stamp.exists() \
            and stamp.read_text().splitlines()[:1] == [packages]:
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / "root.building"
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    # The package lists stay (apt-get download of the cross compiler below reads them).
    _run(["mmdebstrap", "--quiet", "--architectures=arm64,amd64", "--variant=apt", "--skip=cleanup/apt/lists",
          f"--include={included}", SUITE, str(building), MIRROR])
    _install_cross_compiler(building)
    _unpack(building, HEADER_PACKAGES, building)
    # Package traffic from the board (pip against an index) goes through the CAs this host trusts.
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(cert, building / "usr/local/share/ca-certificates" / cert.name)
    _run(["chroot", str(building), "update-ca-certificates"])
    (building / "etc" / "mait-fixture").mkdir(exist_ok=True)
    (building / "etc" / "mait-fixture" / "cpuinfo").write_text(PI5_CPUINFO)
    building.rename(root)
    stamp.write_text(f"{packages}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return root


def _unpack(root: Path, packages: tuple[str, ...], into: Path) -> None:
    """``packages`` downloaded by the userland's apt and unpacked under ``into`` without their dependencies."""
    debs = root / "tmp" / "mait-fixture-debs"
    debs.mkdir()
    _run(["chroot", str(root), "sh", "-c", f"cd /{debs.relative_to(root)} && apt-get download -q "
          + " ".join(packages)], env={**os.environ, "QEMU_CPU": QEMU_CPU})
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(into)])
    shutil.rmtree(debs)


def _install_cross_compiler(root: Path) -> None:
    """The x86-64-hosted GCC for aarch64 under CROSS_PREFIX, and the two names the boards' CC/CXX give it."""
    prefix = root / CROSS_PREFIX.lstrip("/")
    _unpack(root, CROSS_PACKAGES, prefix)
    # binutils' own libraries where the amd64 loader looks; the target's libc linker scripts name /usr/aarch64-linux-gnu.
    for library in (prefix / "usr" / "lib" / "x86_64-linux-gnu").iterdir():
        shutil.copy2(library, root / "usr" / "lib" / "x86_64-linux-gnu" / library.name, follow_symlinks=False)
    (root / "usr" / "aarch64-linux-gnu").symlink_to(f"..{CROSS_PREFIX}/usr/aarch64-linux-gnu")
    for variable, driver in (("CC", "gcc-14"), ("CXX", "g++-14")):
        wrapper = root / COMPILERS[variable].lstrip("/")
        wrapper.write_text(f"#!/bin/sh\nexec {CROSS_PREFIX}/usr/bin/aarch64-linux-gnu-{driver} "
                           '-idirafter /usr/include/aarch64-linux-gnu "$@"\n')
        wrapper.chmod(0o755)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FixtureBoard:
    name: str
    root: Path
    port: int
    host_key: Path  # inside root (/etc/mait-fixture/<name>_host_key)
    process: subprocess.Popen | None = None
    # More of the login environment, as a board's owner sets it (e.g. CCACHE_DIR: a compiler cache the fleet shares).
    environment: dict[str, str] = field(default_factory=dict)

    def known_hosts_line(self) -> str:
        key_type, key = self.host_key.with_suffix(".pub").read_text().split()[0:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key}\n"

    def start(self, authorized_keys: str) -> "FixtureBoard":
        etc = self.root / "etc" / "mait-fixture"
        (etc / f"{self.name}_authorized_keys").write_text(authorized_keys)
        config = etc / f"{self.name}_sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey /etc/mait-fixture/{self.host_key.name}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", f"AuthorizedKeysFile /etc/mait-fixture/{self.name}_authorized_keys",
            "Subsystem sftp /usr/lib/openssh/sftp-server", "PidFile none", "UseDNS no", "MaxStartups 20",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in {"QEMU_CPU": QEMU_CPU, **COMPILERS, **self.environment}.items()),
            ""]))
        root = str(self.root)
        # /sys too: OpenVINO's CPU plugin (hwloc) segfaults without a CPU topology there.
        script = (f"set -e; mount -t proc proc {root}/proc; mount --rbind /dev {root}/dev; "
                  f"mount --rbind /sys {root}/sys; "
                  f"mount -t tmpfs tmpfs {root}/run; mkdir -p {root}/run/sshd; "
                  f"mount --bind {root}/etc/mait-fixture/cpuinfo {root}/proc/cpuinfo; "
                  f"exec chroot {root} /usr/sbin/sshd -D -e -f /etc/mait-fixture/{config.name}")
        log = open(etc / f"{self.name}_sshd.log", "w")
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "QEMU_CPU": QEMU_CPU})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd of {self.name} exited: {(etc / f'{self.name}_sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"sshd of {self.name} did not answer on port {self.port}")

    def stop(self) -> None:
        """Kill the board: its sshd and every process in its mount namespace (sshd's sessions call setsid, so a
        process group is not enough); the mounts go with the namespace."""
        if self.process is not None and self.process.poll() is None:
            try:
                namespace = os.readlink(f"/proc/{self.process.pid}/ns/mnt")
            except OSError:
                namespace = None
            victims = {self.process.pid}
            if namespace is not None:
                for entry in Path("/proc").iterdir():
                    if entry.name.isdigit():
                        try:
                            if os.readlink(entry / "ns" / "mnt") == namespace:
                                victims.add(int(entry.name))
                        except OSError:
                            continue
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait(timeout=30)
        self.process = None


def make_board(name: str, root: Path, port: int | None = None,
               environment: dict[str, str] | None = None) -> FixtureBoard:
    key = root / "etc" / "mait-fixture" / f"{name}_host_key"
    if not key.exists():
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)])
    return FixtureBoard(name=name, root=root, port=port or free_port(), host_key=key, environment=environment or {})


if __name__ == "__main__":
    reason = ensure_binfmt()
    if reason:
        sys.exit(reason)
    started = time.perf_counter()
    print(f"userland ready: {userland()} ({time.perf_counter() - started:.0f} s)")
