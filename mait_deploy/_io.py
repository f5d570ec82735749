"""Atomic file and folder writes: write to a temporary name in the destination folder, rename when complete.

A failed or interrupted write therefore never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from mait_deploy._interrupts import raise_if_interrupted
from mait_deploy.errors import MaitDeployError

TEMP_PREFIX = ".mait-tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix() -> str:
    # The writer's PID is in the name so that a later run can tell a leftover of a killed process (SIGKILL leaves
    # no chance to clean up) from a write still in progress.
    return f"{TEMP_PREFIX}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(folder: Path) -> int:
    """Remove temporary files/folders left in ``folder`` by mait-deploy processes that no longer run."""
    removed = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        pid_text = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def _check_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise MaitDeployError(f"cannot write {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MaitDeployError(f"cannot create folder {parent}: {err.strerror or err}") from err
    if not os.access(parent, os.W_OK):
        raise MaitDeployError(f"cannot write to {parent}: permission denied")
    sweep_stale_temps(parent)


def check_output(path: Path, force: bool, kind: str = "file", ours: Callable[[Path], str | None] | None = None,
                 what: str = "output") -> None:
    """Refuse to overwrite an existing output without ``force``, a destination of the wrong kind, and, with
    ``force``, anything this tool did not write: ``ours(path)`` returns None for our own artifact, else why not."""
    if path.exists() or path.is_symlink():
        if kind == "file" and path.is_dir():
            raise MaitDeployError(f"output {path} is a folder, expected a file path")
        if kind == "dir" and not path.is_dir():
            raise MaitDeployError(f"output {path} exists and is not a folder")
        if not force:
            raise MaitDeployError(f"output {path} exists; pass --force to overwrite it")
        if path.is_symlink():
            raise MaitDeployError(f"output {path} is a symbolic link; --force replaces only what mait-deploy wrote")
        why = ours(path) if ours is not None else None
        if why:
            raise MaitDeployError(f"output {path} is not mait-deploy's own {what} ({why}); --force replaces only "
                                  f"what mait-deploy wrote: remove it yourself or choose another output")
    _check_parent(path)


def _appeared(final: Path) -> MaitDeployError:
    return MaitDeployError(f"output {final} appeared while this command ran (another mait-deploy writing the same "
                           f"output?); it was left as it is: pass --force to replace it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "", replace: bool = True) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path`` atomically. With
    ``replace=False`` a file that appeared at ``path`` meanwhile is an error and stays untouched."""
    final = Path(path)
    if final.is_dir():  # the rename would fail naming our temporary file: name the user's path instead
        raise MaitDeployError(f"output {final} is a folder; give a file path")
    _check_parent(final)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=_temp_prefix(), suffix=suffix or final.suffix, dir=final.parent)
    except OSError as err:
        raise MaitDeployError(f"cannot write in {final.parent}: {err.strerror or err}") from err
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        raise_if_interrupted()  # a Ctrl-C some library swallowed still means: do not commit
        # mkstemp creates 0600; give the artifact the permissions a plain open() would have.
        if temp.exists():
            os.chmod(temp, 0o666 & ~_umask())
        if replace:
            os.replace(temp, final)
        else:
            try:
                os.link(temp, final)  # atomic and never replaces
            except FileExistsError:
                raise _appeared(final) from None
            temp.unlink()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an old folder is swapped out
    and deleted only after the new one is in place). With ``replace=False`` a folder that appeared at ``path``
    meanwhile is an error and stays untouched."""
    final = Path(path)
    _check_parent(final)
    try:
        temp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), dir=final.parent))
    except OSError as err:
        raise MaitDeployError(f"cannot write in {final.parent}: {err.strerror or err}") from err
    try:
        yield temp
        raise_if_interrupted()
        os.chmod(temp, 0o777 & ~_umask())
        if final.exists() or final.is_symlink():
            if not replace:
                raise _appeared(final)
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix() + "old-", dir=final.parent))
            os.replace(final, old / "previous")
            os.replace(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(temp, final)  # fails rather than replace a folder created since the check above
            except OSError as err:
                if final.exists():
                    raise _appeared(final) from err
                raise
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically with a trailing newline."""
    with atomic_path(path, suffix=".json") as temp:
        temp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(value: Any) -> str:
    """The sha256 of ``value`` as canonical JSON (keys sorted, what JSON cannot say as its str): the one key of
    deploy's stages, the gate memo and a board's site-packages cache."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """Tuples to lists and numpy scalars to Python numbers, recursively, for json.dumps."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()  # numpy scalar
    return value


MAX_JSON_BYTES = 64 * 2**20  # manifests, configs and reports are kilobytes; a larger file is not one of ours


def read_json(path: str | os.PathLike[str], error: type[MaitDeployError] = MaitDeployError,
              what: str = "file") -> Any:
    """Parse a JSON file; a missing, oversized, undecodable or invalid file is one ``error`` line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{path} is {size / 2**20:.0f} MB: too large for a {what}")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as err:
        raise error(f"{what} not found: {path}") from err
    except IsADirectoryError as err:
        raise error(f"{path} is a folder, not a {what}") from err
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise error(f"{path} is not valid JSON: {str(err).splitlines()[0][:200]}") from err
    if json_depth(data) > MAX_JSON_DEPTH:  # every reader after this one (validation included) may recurse
        raise error(f"{path} is nested deeper than {MAX_JSON_DEPTH} levels: not a {what}")
    return data


MAX_JSON_DEPTH = 32  # as the native runner's manifest reader


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: a hostile file cannot recurse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
