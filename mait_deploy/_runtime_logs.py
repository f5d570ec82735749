"""What runtimes print on their own: silenced at the file-descriptor level where their libraries offer no switch.

stdlib only (the CLI sets the switch before any runtime is imported; the device runner honours it).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

QUIET_RUNTIMES_ENV = "MAIT_QUIET_RUNTIMES"  # set (the CLI without --verbose): runtimes' own stderr lines at load

# What the converters and runtimes print on their own (TensorFlow's converter inside litert-torch, absl, torchao's
# optional kernels, torch's internal logs): lines that look like errors and are not. Silenced unless --verbose
# (TORCH_LOGS=-torch: torch resets its loggers' levels when it loads). Left: LiteRT's "INFO: Created TensorFlow
# Lite XNNPACK delegate" line, which its Python package offers no switch for.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3",
                     "TF_ENABLE_ONEDNN_OPTS": "0", "TORCH_LOGS": "-torch",
                     # tqdm's bars (ai-edge-quantizer's, in LiteRT's FP16 build): tqdm reads TQDM_* as defaults.
                     "TQDM_DISABLE": "1",
                     # Runtimes that write to file descriptor 2 themselves while a bundle loads (LiteRT's "Created
                     # TensorFlow Lite XNNPACK delegate", OpenVINO's frontends' absl lines on a corrupt IR,
                     # ExecuTorch's cpuinfo): the device runner silences that descriptor around the load.
                     QUIET_RUNTIMES_ENV: "1"}
QUIET_LOGGERS = ("torchao", "torch", "nncf", "absl", "tensorflow", "jax", "onnxscript")


def quiet_third_party() -> None:
    """Silence third-party logs before any of those libraries loads (they are imported lazily, later)."""
    import logging
    import warnings

    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


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
