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
folder), keys and known-hosts files must exist, each runtime must be a registered backend. The file is bounded
before it is read (64 KB, 256 devices, groups 16 deep) and YAML anchors and aliases are refused before any object
is built (a 600-byte alias bomb expands to gigabytes); every problem is one line naming the device and the key.
"""

from __future__ import annotations

import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, TypeVar

from mait_deploy import backends
from mait_deploy._deps import require
from mait_deploy.errors import RemoteError, shorten

INSTALL_MODES = ("index", "push")
MAX_INVENTORY_BYTES = 64 * 1024
MAX_DEVICES = 256
MAX_GROUP_DEPTH = 16
MAX_TAGS = 32
MAX_TIMEOUT_S = 7 * 24 * 3600
Number = TypeVar("Number", int, float)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ALIASES = {"ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
            "ansible_ssh_private_key_file": "identity_file", "ansible_python_interpreter": "python",
            "ansible_ssh_common_args": None, "ansible_connection": None}
_FIELDS = {"host", "port", "user", "identity_file", "known_hosts", "python", "runtime", "runtimes", "workdir", "tags",
           "install", "timeout"}
# A board's work folder: relative to the login's home (no "~", no "..", no shell syntax: it is quoted anyway).
_WORKDIR = re.compile(r"^[A-Za-z0-9._/-]+\Z")


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

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "host": self.host, "port": self.port, "user": self.user,
                "runtimes": list(self.runtimes), "workdir": self.workdir, "tags": list(self.tags),
                "install": self.install}


def _short(value: object) -> str:
    return shorten(repr(value))


def _segment(name: object) -> str:
    """A group's name as one segment of a path in an error: itself when it is a plain word, else quoted (a
    name can hold a newline, and an error is one line)."""
    return name if isinstance(name, str) and _NAME.match(name) else _short(name)


def _text(where: str, key: str, value: object) -> str:
    """A setting that must be a short string (a number is taken as its text: YAML reads 10.0.0.5 as a string
    but a host named 1234 as an integer)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RemoteError(f"{where}: {key} must be text, got {type(value).__name__} {_short(value)}")
    text = str(value)
    if not text or len(text) > 255:
        raise RemoteError(f"{where}: {key} must be 1 to 255 characters, got {len(text)}")
    return text


def _words(where: str, key: str, value: object) -> tuple[str, ...]:
    """A word or a list of words (runtimes, tags)."""
    values = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else \
        list(value) if isinstance(value, tuple) else value
    if not isinstance(values, list) or len(values) > MAX_TAGS:
        raise RemoteError(f"{where}: {key} must be a word or a list of at most {MAX_TAGS}, got {_short(value)}")
    return tuple(_text(where, key, item) for item in values)


def _number(where: str, key: str, value: int | float | str | object, kind: type[Number], low: float,
            high: float) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RemoteError(f"{where}: {key} must be a number, got {_short(value)}")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise RemoteError(f"{where}: {key} must be a number, got {_short(value)}") from None
    if not low < number < high:
        raise RemoteError(f"{where}: {key} {_short(value)} is out of range")
    return number


def _check(name: str, values: Mapping[str, object], origin: str) -> Device:
    where = f"{origin}: device {_short(name)}"
    if not _NAME.match(name):
        raise RemoteError(f"{where}: a device name is letters, digits, '.', '_' and '-' (it names a local folder)")
    merged: dict[str, object] = {}
    for given, value in values.items():
        key = _ALIASES.get(given, given) if given in _ALIASES else given
        if key is None:  # a setting of Ansible's that means nothing here
            continue
        if key not in _FIELDS:
            raise RemoteError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})")
        merged[key] = value
    if not merged.get("host"):
        raise RemoteError(f"{where}: 'host' is missing")
    host = _text(where, "host", merged["host"])
    if any(c.isspace() or c in ";|&$`'\"<>\\" for c in host):
        raise RemoteError(f"{where}: host {_short(host)} is not a host name or address")
    port = _number(where, "port", merged.get("port", 22), int, 0, 65536)
    user = _text(where, "user", merged.get("user", "root"))
    if not _NAME.match(user):
        raise RemoteError(f"{where}: user {user!r} is not a login name")

    runtimes = merged.get("runtimes", merged.get("runtime"))
    if not runtimes:
        raise RemoteError(f"{where}: 'runtime' is missing (one of {', '.join(backends.names())}, or a list)")
    runtimes = _words(where, "runtime", runtimes)
    for runtime in runtimes:
        if runtime not in backends.names():
            raise RemoteError(f"{where}: runtime {_short(runtime)} is not one of {', '.join(backends.names())}")
    install = _text(where, "install", merged.get("install", "index"))
    if install not in INSTALL_MODES:
        raise RemoteError(f"{where}: install {install!r} is not one of {', '.join(INSTALL_MODES)}")
    workdir = _text(where, "workdir", merged.get("workdir", "mait-deploy"))
    if not _WORKDIR.match(workdir) or ".." in PurePosixPath(workdir).parts or workdir in ("/", "."):
        raise RemoteError(f"{where}: workdir {workdir!r} must be a plain path (letters, digits, . _ - /), "
                          "relative to the login's home or absolute, without '..'")
    python = _text(where, "python", merged.get("python", "python3"))
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", python):
        raise RemoteError(f"{where}: python {python!r} is not a path to an interpreter")
    tags = _words(where, "tags", merged.get("tags") or ())
    paths = {}
    for key, default in (("identity_file", "~/.ssh/id_ed25519"), ("known_hosts", "~/.ssh/known_hosts")):
        path = Path(os.path.expanduser(_text(where, key, merged.get(key, default))))
        if not path.is_file():
            raise RemoteError(f"{where}: {key} {path} does not exist")
        paths[key] = path
    timeout = _number(where, "timeout", merged.get("timeout", 600), float, 0, MAX_TIMEOUT_S)
    return Device(name=name, host=host, port=port, user=user, runtimes=runtimes, install=install,
                  workdir=workdir.rstrip("/"), python=python, tags=tags, timeout=timeout, **paths)


def _mapping(value: object, what: str, origin: str) -> Mapping[str, object]:
    """An inventory part that must be a mapping (absent or empty: an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RemoteError(f"{origin}: {what} must be a mapping, got {type(value).__name__} {_short(value)}")
    return value


def _ansible_hosts(group: object, inherited: Mapping[str, object], tags: tuple[str, ...],
                   out: dict[str, tuple[dict[str, object], list[str]]], origin: str, where: str = "all") -> None:
    if len(tags) > MAX_GROUP_DEPTH:
        raise RemoteError(f"{origin}: groups nested deeper than {MAX_GROUP_DEPTH} ({where})")
    group = _mapping(group, f"group {where}", origin)
    variables = {**inherited, **_mapping(group.get("vars"), f"{where}.vars", origin)}
    for name, values in _mapping(group.get("hosts"), f"{where}.hosts", origin).items():
        entry = out.setdefault(str(name), ({}, []))
        entry[0].update({**variables, **_mapping(values, f"host {_short(name)}", origin)})
        entry[1].extend(t for t in tags if t not in entry[1])
        if len(out) > MAX_DEVICES:
            raise RemoteError(f"{origin}: more than {MAX_DEVICES} devices")
    for child, body in _mapping(group.get("children"), f"{where}.children", origin).items():
        _ansible_hosts(body, variables, tags + (str(child),), out, origin, f"{where}.children.{_segment(child)}")


def _load_yaml(yaml: types.ModuleType, path: Path) -> object:
    """The document, refused before any object is built when it uses anchors or aliases (an inventory needs
    neither, and each alias can multiply what the next one expands: a 600-byte file becomes gigabytes)."""
    text = path.read_text(encoding="utf-8")
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise RemoteError(f"{path}: YAML anchors and aliases (&name, *name) are not allowed in an inventory "
                              f"(line {event.start_mark.line + 1}); write each setting out")
    return yaml.safe_load(text)


def load_inventory(path: str | os.PathLike[str]) -> list[Device]:
    """Read and check every device of an inventory file (see the module docstring for its shape)."""
    yaml = require("yaml", "remote")
    path = Path(path)
    if not path.is_file():
        raise RemoteError(f"inventory not found: {path}")
    if path.stat().st_size > MAX_INVENTORY_BYTES:
        raise RemoteError(f"{path}: an inventory larger than {MAX_INVENTORY_BYTES // 1024} KB is not an inventory")
    try:
        data = _load_yaml(yaml, path)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RemoteError(f"{path}: not valid YAML ({first[:200]})") from None
    if not isinstance(data, Mapping):
        raise RemoteError(f"{path}: expected a mapping with 'devices' (or an Ansible 'all' group)")
    entries: dict[str, tuple[dict[str, object], list[str]]] = {}
    if "devices" in data:
        defaults = _mapping(data.get("defaults"), "defaults", str(path))
        devices = _mapping(data["devices"], "devices", str(path))
        if len(devices) > MAX_DEVICES:
            raise RemoteError(f"{path}: more than {MAX_DEVICES} devices")
        for name, values in devices.items():
            if not isinstance(values, Mapping):
                raise RemoteError(f"{path}: device {_short(name)} must be a mapping of settings")
            entries[str(name)] = ({**defaults, **values}, [])
    elif "all" in data:
        _ansible_hosts(data["all"], {}, (), entries, str(path))
    else:
        raise RemoteError(f"{path}: expected a mapping with 'devices' (or an Ansible 'all' group)")
    if not entries:
        raise RemoteError(f"{path}: no devices")
    found = []
    for name, (values, group_tags) in entries.items():
        given = values.pop("tags", ())
        own = list(_words(f"{path}: device {_short(name)}", "tags", given if given is not None else []))
        found.append(_check(name, {**values, "tags": own + [t for t in group_tags if t not in own]}, str(path)))
    return found


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
