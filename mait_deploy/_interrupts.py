"""Remember a Ctrl-C (SIGINT) or SIGTERM even when a third-party library swallows the KeyboardInterrupt.

torch.onnx.export, for one, catches ``Exception`` around each capture strategy and falls back to the next; a
KeyboardInterrupt that reaches it wrapped in a torch error is taken as a failed strategy and the export goes on.
The signal is therefore recorded in a flag: the atomic writers refuse to commit once it is set, and the CLI
reports "interrupted" (exit 130) whatever the exception that surfaced, or none.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

_requested = threading.Event()


def interrupt_requested() -> bool:
    return _requested.is_set()


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when an interrupt arrived inside ``remember_interrupts`` (even a swallowed one)."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def remember_interrupts() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set the flag, then raise KeyboardInterrupt as Ctrl-C normally does."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers can only be set there
        yield
        return
    _requested.clear()

    def on_signal(signum: int, frame: Any) -> None:
        _requested.set()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _requested.clear()
        for sig, handler in previous.items():
            # None: the handler was installed outside Python; the default is the closest we can restore.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
