"""What runtimes print on their own: silenced at the file-descriptor level where their libraries offer no switch.

stdlib only (the CLI sets the switch before any runtime is imported; the device runner honours it).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

QUIET_RUNTIMES_ENV = "MAIT_QUIET_RUNTIMES"  # set (the CLI without --verbose): runtimes' own stderr lines at load


@contextlib.contextmanager
def runtime_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null while a runtime loads or a converter runs, where the CLI asked for quiet:
    libraries that log from C++ (absl, TFLite, cpuinfo) or draw their own progress bars (NNCF) have no switch a
    Python caller can reach. Python exceptions are unaffected (raised, printed later by the caller)."""
    if os.environ.get(QUIET_RUNTIMES_ENV) != "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()  # what was written meanwhile goes to /dev/null, not out after the restore
        os.dup2(saved, 2)
        os.close(saved)
