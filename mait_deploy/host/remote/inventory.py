"""The user's boards, read from a YAML inventory in the shape of an Ansible inventory.

Two spellings are accepted::

    # mait-deploy's own
    defaults: {user: pi, identity_file: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts}
    devices:
      pi5-a: {host: 192.168.1.20, runtime: litert, tags: [pi]}

    # an Ansible inventory (groups become tags, ansible_* variables are understood)
    all:
      vars: {ansible_user: pi, ansible_ssh_private_key_file: ~/.ssh/id_ed25519}
      children:
        pi:
          hosts:
            pi5-a: {ansible_host: 192.168.1.20, runtime: litert}

Every value is checked here, before anything connects: a device name must be a plain word (it names a local
folder), keys and known-hosts files must exist, each runtime must be a registered backend.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

from mait_deploy._deps import require
from mait_deploy.errors import RemoteError

INSTALL_MODES = ("index", "push")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ALIASES = {"ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
            "ansible_ssh_private_key_file": "identity_file", "ansible_python_interpreter": "python",
            "ansible_ssh_common_args": None, "ansible_connection": None}
_FIELDS = {"host", "port", "user", "identity_file", "known_hosts", "python", "runtime", "runtimes", "workdir", "tags",
           "install", "timeout"}
# A board's work folder: relative to the login's home (no "~", no "..", no shell syntax: it is quoted anyway).
_WORKDIR = re.compile(r"^[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class Device:
    """One board: how to reach it and what to install there."""

    name: str
    host: str
    port: int = 22
    user: str = "root"
    identity_file: Path = Path("~/.ssh/id_ed25519")
    known_hosts: Path = Path("~/.ssh/known_hosts")
    python: str = "python3"
    runtimes: tuple[str, ...] = ()  # backends whose runtimes are installed there (each process imports one)
    workdir: str = "mait-deploy"  # relative to the login's home, or absolute
    tags: tuple[str, ...] = field(default_factory=tuple)
    install: str = "index"  # index: the board's pip and package index; push: wheels resolved on the host
    timeout: float = 600.0  # seconds per remote step

    @property
    def venv(self) -> str:
        return str(PurePosixPath(self.workdir) / "venv")

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port, "user": self.user,
                "runtimes": list(self.runtimes), "workdir": self.workdir, "tags": list(self.tags),
                "install": self.install}


def _check(name: str, values: Mapping[str, Any], origin: str) -> Device:
    where = f"{origin}: device {name!r}"
    if not _NAME.match(name):
        raise RemoteError(f"{where}: a device name is letters, digits, '.', '_' and '-' (it names a local folder)")
    merged: dict[str, Any] = {}
    for key, value in values.items():
        key = _ALIASES.get(key, key) if key in _ALIASES else key
        if key is None:
            continue
        if key not in _FIELDS:
            raise RemoteError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
        merged[key] = value
    if not merged.get("host") or not isinstance(merged["host"], str):
        raise RemoteError(f"{where}: 'host' is missing")
    if any(c.isspace() or c in ";|&$`'\"<>\\" for c in merged["host"]):
        raise RemoteError(f"{where}: host {merged['host']!r} is not a host name or address")
    try:
        port = int(merged.get("port", 22))
    except (TypeError, ValueError):
        raise RemoteError(f"{where}: port must be a number, got {merged.get('port')!r}") from None
    if not 0 < port < 65536:
        raise RemoteError(f"{where}: port {port} is out of range")
    user = str(merged.get("user", "root"))
    if not _NAME.match(user):
        raise RemoteError(f"{where}: user {user!r} is not a login name")
    from mait_deploy import backends

    runtimes = merged.get("runtimes", merged.get("runtime"))
    if not runtimes:
        raise RemoteError(f"{where}: 'runtime' is missing (one of {', '.join(backends.names())}, or a list)")
    runtimes = (runtimes,) if isinstance(runtimes, str) else tuple(str(r) for r in runtimes)
    for runtime in runtimes:
        if runtime not in backends.names():
            raise RemoteError(f"{where}: runtime {runtime!r} is not one of {', '.join(backends.names())}")
    install = str(merged.get("install", "index"))
    if install not in INSTALL_MODES:
        raise RemoteError(f"{where}: install {install!r} is not one of {', '.join(INSTALL_MODES)}")
    workdir = str(merged.get("workdir", "mait-deploy"))
    if not _WORKDIR.match(workdir) or ".." in PurePosixPath(workdir).parts or workdir in ("/", "."):
        raise RemoteError(f"{where}: workdir {workdir!r} must be a plain path (letters, digits, . _ - /), "
                          "relative to the login's home or absolute, without '..'")
    python = str(merged.get("python", "python3"))
    if not re.match(r"^[A-Za-z0-9._/-]+$", python):
        raise RemoteError(f"{where}: python {python!r} is not a path to an interpreter")
    tags = merged.get("tags", ())
    tags = (tags,) if isinstance(tags, str) else tuple(str(t) for t in tags)
    paths = {}
    for key, default in (("identity_file", "~/.ssh/id_ed25519"), ("known_hosts", "~/.ssh/known_hosts")):
        path = Path(os.path.expanduser(str(merged.get(key, default))))
        if not path.is_file():
            raise RemoteError(f"{where}: {key} {path} does not exist")
        paths[key] = path
    try:
        timeout = float(merged.get("timeout", 600))
    except (TypeError, ValueError):
        raise RemoteError(f"{where}: timeout must be seconds, got {merged.get('timeout')!r}") from None
    return Device(name=name, host=merged["host"], port=port, user=user, runtimes=runtimes, install=install,
                  workdir=workdir.rstrip("/"), python=python, tags=tags, timeout=timeout, **paths)


def _ansible_hosts(group: Mapping[str, Any], inherited: Mapping[str, Any], tags: tuple[str, ...],
                   out: dict[str, tuple[dict[str, Any], list[str]]]) -> None:
    variables = {**inherited, **(group.get("vars") or {})}
    for name, values in (group.get("hosts") or {}).items():
        entry = out.setdefault(str(name), ({}, []))
        entry[0].update({**variables, **(values or {})})
        entry[1].extend(t for t in tags if t not in entry[1])
    for child, body in (group.get("children") or {}).items():
        _ansible_hosts(body or {}, variables, tags + (str(child),), out)


def load_inventory(path: str | os.PathLike[str]) -> list[Device]:
    """Read and check every device of an inventory file (see the module docstring for its shape)."""
    yaml = require("yaml", "remote")
    path = Path(path)
    if not path.is_file():
        raise RemoteError(f"inventory not found: {path}")
    if path.stat().st_size > 1_000_000:
        raise RemoteError(f"{path}: an inventory larger than 1 MB is not an inventory")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RemoteError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise RemoteError(f"{path}: expected a mapping with 'devices' (or an Ansible 'all' group)")
    entries: dict[str, tuple[dict[str, Any], list[str]]] = {}
    if "devices" in data:
        defaults = data.get("defaults") or {}
        for name, values in (data["devices"] or {}).items():
            if not isinstance(values, Mapping):
                raise RemoteError(f"{path}: device {name!r} must be a mapping of settings")
            entries[str(name)] = ({**defaults, **values}, [])
    elif "all" in data:
        _ansible_hosts(data["all"] or {}, {}, (), entries)
    else:
        raise RemoteError(f"{path}: expected a mapping with 'devices' (or an Ansible 'all' group)")
    if not entries:
        raise RemoteError(f"{path}: no devices")
    devices = []
    for name, (values, group_tags) in entries.items():
        own = values.pop("tags", ())
        own = [own] if isinstance(own, str) else list(own or ())
        devices.append(_check(name, {**values, "tags": own + [t for t in group_tags if t not in own]}, str(path)))
    return devices


def select(devices: Iterable[Device], names: Iterable[str] = (), tags: Iterable[str] = ()) -> list[Device]:
    """The devices named (all when no name and no tag is given), plus those carrying any of ``tags``."""
    devices, names, tags = list(devices), list(names), list(tags)
    known = {d.name for d in devices}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RemoteError(f"no device named {unknown[0]!r} in the inventory (devices: {', '.join(sorted(known))})")
    if not names and not tags:
        return devices
    chosen = [d for d in devices if d.name in names or set(tags) & set(d.tags)]
    if not chosen:
        raise RemoteError(f"no device carries the tag(s) {', '.join(tags)}")
    return chosen
