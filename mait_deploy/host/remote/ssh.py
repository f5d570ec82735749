"""One SSH connection to one board (asyncssh): keys only, strict host keys, quoted commands, bounded steps.

Every command is an argument list joined with ``shlex.join``: a bundle, folder or device name with spaces or ``;``
reaches the board's shell as one quoted word. Commands run under ``umask 077`` and the work folder is 0700, so
nothing mait-deploy writes on a board is readable by other users.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mait_deploy._deps import require
from mait_deploy.errors import RemoteError
from mait_deploy.host.remote.inventory import Device

if TYPE_CHECKING:  # pragma: no cover
    from asyncssh import SFTPClient, SSHClientConnection


@dataclass(frozen=True)
class Completed:
    exit_status: int
    stdout: str
    stderr: str
    seconds: float


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def host_listed(known_hosts: Path, host: str, port: int) -> bool:
    """True when ``known_hosts`` has any entry (plain or hashed) for this host and port."""
    names = {host if port == 22 else f"[{host}]:{port}"}
    for line in known_hosts.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) < 3 or line.lstrip().startswith("#"):
            continue
        patterns = fields[1] if fields[0].startswith("@") else fields[0]
        for pattern in patterns.split(","):
            if pattern.startswith("|1|"):
                try:
                    salt, digest = (base64.b64decode(part) for part in pattern[3:].split("|", 1))
                except (ValueError, TypeError):
                    continue
                if any(hmac.compare_digest(hmac.new(salt, n.encode(), hashlib.sha1).digest(), digest)
                       for n in names):
                    return True
            elif pattern in names:
                return True
    return False


# A remote step: a new session (setsid: its own process group, id = this shell's pid) that records its group id,
# runs the command, and keeps a watcher on the sshd process that started it. When the connection is lost, sshd's
# process ends, and the watcher kills the whole group: a step never outlives its connection (a LiteRT profile once
# kept a core busy for 20 minutes after its host gave up). $1: pid file, $2: the sshd process, then the command.
STEP_WRAPPER = (
    'pidfile=$1; watched=$2; shift 2; echo $$ > "$pidfile"; '
    '( while [ -d "/proc/$watched" ]; do sleep 2; done; rm -f "$pidfile"; kill -KILL -$$ ) '
    '</dev/null >/dev/null 2>&1 & watcher=$!; '
    '"$@"; status=$?; kill $watcher 2>/dev/null; rm -f "$pidfile"; exit $status')
# Ends a step's group from a second command on the same connection (a timeout, Ctrl-C on the host).
# (dash's kill takes no "--": a negative number after the signal is the group.)
STEP_KILLER = ('group=$(cat "$1" 2>/dev/null) || exit 0; kill -TERM -"$group" 2>/dev/null; '
               'for _ in 1 2 3 4 5; do kill -0 -"$group" 2>/dev/null || break; sleep 1; done; '
               'kill -KILL -"$group" 2>/dev/null; rm -f "$1"')
CONNECT_TIMEOUT_S = 20.0  # the longest a connection and login may take, whatever a device's step timeout


class Board:
    """An open connection to one device. Use ``async with await Board.open(device): ...``."""

    def __init__(self, device: Device, connection: SSHClientConnection, new_host_key: str | None = None) -> None:
        self.device = device
        self._connection = connection
        self.new_host_key = new_host_key  # the fingerprint recorded in known_hosts by accept_new
        self._sftp: SFTPClient | None = None

    @classmethod
    async def open(cls, device: Device, accept_new: bool = False, connect_timeout: float | None = None) -> "Board":
        """Connect and log in; a board that does not answer within its own ``timeout`` (at most
        CONNECT_TIMEOUT_S: a live board answers in about a second) is one RemoteError."""
        asyncssh = require("asyncssh", "remote")
        connect_timeout = connect_timeout or min(device.timeout, CONNECT_TIMEOUT_S)
        where = f"{device.name} ({device.address})"
        options = dict(host=device.host, port=device.port, username=device.user,
                       client_keys=[str(device.identity_file)], agent_path=None, password=None,
                       preferred_auth="publickey", config=[], connect_timeout=connect_timeout,
                       login_timeout=connect_timeout)
        new_key = None
        try:
            try:
                connection = await asyncssh.connect(known_hosts=str(device.known_hosts), **options)
            except asyncssh.HostKeyNotVerifiable as err:
                if host_listed(device.known_hosts, device.host, device.port):
                    raise RemoteError(f"{where}: the host key does not match {device.known_hosts} "
                                      "(it changed, or this is another machine); nothing was done") from err
                if not accept_new:
                    raise RemoteError(f"{where}: unknown host key (not in {device.known_hosts}); check it and add "
                                      "it, or pass --accept-new-host-keys to record it on first use") from err
                connection = await asyncssh.connect(known_hosts=None, **options)
                key = connection.get_server_host_key()
                name = device.host if device.port == 22 else f"[{device.host}]:{device.port}"
                with open(device.known_hosts, "a", encoding="utf-8") as handle:
                    handle.write(f"{name} {key.export_public_key().decode().split(' #')[0].strip()}\n")
                new_key = key.get_fingerprint()
        except RemoteError:
            raise
        except asyncssh.PermissionDenied:
            raise RemoteError(f"{where}: the key {device.identity_file} was refused (keys only, no passwords)") \
                from None
        except asyncssh.KeyImportError as err:
            hint = " (passphrase-protected keys are not supported)" if "passphrase" in str(err).lower() else ""
            raise RemoteError(f"{where}: cannot use the key {device.identity_file}: {err}{hint}") from None
        except asyncssh.Error as err:
            raise RemoteError(f"{where}: SSH failed: {err.reason if hasattr(err, 'reason') else err}") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise RemoteError(f"{where}: no answer within {connect_timeout:g} s") from None
        except OSError as err:
            raise RemoteError(f"{where}: cannot connect: {err.strerror or err}") from None
        return cls(device, connection, new_key)

    async def __aenter__(self) -> "Board":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.exit()
            except Exception:  # the connection may already be gone
                pass
        self._connection.close()
        try:
            await asyncio.wait_for(self._connection.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError):
            pass

    async def run(self, argv: Sequence[str], timeout: float | None = None, check: bool = True,
                  what: str | None = None) -> Completed:
        """Run one command (an argument list, quoted here) with a timeout; a failure is a RemoteError. The
        command runs as a process group of its own that ends with the step: on a timeout or a cancel (Ctrl-C)
        the group is killed, and a watcher on the board kills it when the connection is lost (STEP_WRAPPER)."""
        asyncssh = require("asyncssh", "remote")
        pidfile = f"/tmp/mait-step-{secrets.token_hex(8)}.pid"
        command = "umask 077 && exec " + shlex.join(["setsid", "--wait", "sh", "-c", STEP_WRAPPER, "mait-step",
                                                     pidfile]) + ' "$PPID" ' + shlex.join(argv)
        timeout = timeout or self.device.timeout
        what = what or argv[0]
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await self._connection.run(command, check=False, timeout=timeout)
        except asyncssh.TimeoutError:
            await self._kill_step(pidfile)
            raise RemoteError(f"{self.device.name}: {what} did not finish within {timeout:g} s (stopped on "
                              f"the board)") from None
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_step(pidfile))
            raise
        except (asyncssh.Error, OSError) as err:
            raise RemoteError(f"{self.device.name}: {what}: connection lost ({err})") from None
        if result.exit_status is None:  # no exit status: the connection dropped or a signal killed it
            why = f"killed by signal {result.exit_signal[0]}" if result.exit_signal else "the connection was lost"
            raise RemoteError(f"{self.device.name}: {what}: {why}")
        completed = Completed(result.exit_status, str(result.stdout or ""), str(result.stderr or ""),
                              loop.time() - started)
        if check and completed.exit_status != 0:
            reason = last_line(completed.stderr) or last_line(completed.stdout) or f"exit {completed.exit_status}"
            raise RemoteError(f"{self.device.name}: {what} failed: {reason}")
        return completed

    async def sftp(self) -> SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = await self._connection.start_sftp_client()
            except Exception as err:  # asyncssh raises several types here; all mean "no SFTP"
                raise RemoteError(f"{self.device.name}: SFTP is not available ({err})") from None
        return self._sftp

    async def put(self, local: Path, remote: str) -> None:
        """Copy a file or a folder (recursively) to ``remote``."""
        sftp = await self.sftp()
        try:
            await sftp.put(str(local), remote, recurse=local.is_dir())
        except Exception as err:
            raise RemoteError(f"{self.device.name}: copying {local.name} failed ({err})") from None

    async def get(self, remote: str, local: Path) -> None:
        sftp = await self.sftp()
        try:
            await sftp.get(remote, str(local))
        except Exception as err:
            raise RemoteError(f"{self.device.name}: fetching {remote} failed ({err})") from None

    async def exists(self, remote: str) -> bool:
        sftp = await self.sftp()
        try:
            return bool(await sftp.exists(remote))
        except Exception as err:  # asyncssh's SFTP errors (a dropped connection among them)
            raise RemoteError(f"{self.device.name}: checking {remote} failed ({err})") from None

    async def _kill_step(self, pidfile: str) -> None:
        """End a step's process group on the board (TERM, then KILL after a grace) and remove its pid file."""
        await self._best_effort(["sh", "-c", STEP_KILLER, "mait-kill", pidfile], 30)

    async def _best_effort(self, argv: Sequence[str], timeout: float) -> None:
        """Run a clean-up command, ignoring every failure: on the way out (also after a cancel) a board that
        dropped is reported elsewhere."""
        try:
            await asyncio.wait_for(self._connection.run(shlex.join(argv), check=False), timeout)
        except Exception:
            pass

    async def protect(self, remote: str) -> None:
        """Best-effort ``chmod -R go-rwx``."""
        await self._best_effort(["chmod", "-R", "go-rwx", "--", remote], 60)

    async def remove_tree(self, remote: str) -> None:
        """Best-effort removal."""
        await self._best_effort(["rm", "-rf", "--", remote], 15)
