"""Load a bundle's program in a child process first, for runtimes that can die on a corrupt program.

A program whose hashes match its manifest can still be corrupt (or crafted): most runtimes verify it and raise
(ONNX Runtime's protobuf parser, OpenVINO's IR reader, LiteRT's flatbuffer verifier, the native runner's
ExecuTorch loader with InternalConsistency). ExecuTorch's Python runtime aborts the process on some (a string in
the program that is not UTF-8 ends in std::terminate inside its bindings): a runner that declares
``load_may_crash`` is loaded in a child process first, and a child killed by a signal becomes one error line
instead of the death of `verify`. Each artifact (by its sha256) is probed once per process.

``python -m mait_deploy.device.load_child BUNDLE`` is the child: it loads the runner and exits 0, or prints the
error line and exits 1. Device side: numpy and the bundle's runtime only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from mait_deploy.errors import BundleError, failure_line

CHILD = "mait_deploy.device.load_child"  # the module the child runs
PROBE_ENV = "MAIT_LOAD_PROBE"  # set in the child: it loads in-process
PROBE_TIMEOUT_S = 600
_probed: set[str] = set()


def probe_load(runner: Any) -> None:
    """Load ``runner``'s bundle in a child process unless this process probed the same artifact already; a child
    that dies by a signal, or fails, is a BundleError naming the artifact."""
    digest = runner.manifest.artifact.sha256
    if os.environ.get(PROBE_ENV) == "1" or digest in _probed:
        return
    artifact = runner.bundle_dir / runner.manifest.artifact.path
    environment = {**os.environ, PROBE_ENV: "1"}
    try:
        done = subprocess.run([sys.executable, "-m", CHILD, str(runner.bundle_dir)], capture_output=True,
                              text=True, errors="replace", timeout=PROBE_TIMEOUT_S, env=environment)
    except subprocess.TimeoutExpired:
        raise BundleError(f"{runner.runtime_name} did not finish loading {artifact} within {PROBE_TIMEOUT_S} s") \
            from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise BundleError(f"{runner.runtime_name} crashed ({name}) loading {artifact}: the program is corrupt or "
                          f"was built for another version of the runtime (its hashes match its manifest)")
    if done.returncode != 0:
        raise BundleError(failure_line(done.stderr).removeprefix("error: "))
    _probed.add(digest)


def built_here(sha256: str) -> None:
    """A program (by its sha256) this process built itself, or a build job of its own did (host/jobs): no
    child-process probe for it."""
    _probed.add(sha256)
