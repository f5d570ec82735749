"""Run one job per board, several boards at once, one job at a time per board.

A board whose job fails yields its failure row and the others go on. Ctrl-C or SIGTERM cancels every job; each job
removes its remote temporaries in its own ``finally`` before the connection closes, then KeyboardInterrupt is
raised (the CLI exits 130).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable, Sequence, TypeVar

from mait_deploy.errors import MaitDeployError
from mait_deploy.host.remote.inventory import Device

T = TypeVar("T")


def run_on_devices(devices: Sequence[Device], job: Callable[[Device], Awaitable[T]],
                   on_failure: Callable[[Device, str], T], max_parallel: int = 4) -> list[T]:
    """``job(device)`` for every device, at most ``max_parallel`` at once; results in the devices' order."""
    if max_parallel < 1:
        raise MaitDeployError(f"--max-parallel must be at least 1, got {max_parallel}")
    interrupted = False

    async def main() -> list[T]:
        nonlocal interrupted
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None  # called from a task: asyncio.run's

        def cancel() -> None:
            nonlocal interrupted
            interrupted = True
            me.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, cancel)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
                pass
        gate = asyncio.Semaphore(max_parallel)

        async def one(device: Device) -> T:
            async with gate:
                try:
                    return await job(device)
                except MaitDeployError as err:
                    return on_failure(device, str(err))
                except Exception as err:  # whatever a dropped board raises, it is that board's failed row
                    return on_failure(device, f"{device.name}: {type(err).__name__}: {err}".splitlines()[0])

        try:
            return list(await asyncio.gather(*(one(device) for device in devices)))
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
