"""What goes onto a board: bundles (the files their manifest lists, and their signature), hash-checked on arrival,
and the public key a run tells the boards to trust. One bundle folder per identity, committed by a rename."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from mait_deploy._io import sha256_file
from mait_deploy.device.manifest import MANIFEST_FILE, Manifest, check_files, read_manifest
from mait_deploy.device.signing import SIGNATURE_FILE
from mait_deploy.errors import RemoteError
from mait_deploy.host.remote.ssh import Board

_HASH_CHECK = ("import hashlib, json, pathlib, sys; folder = pathlib.Path(sys.argv[1]); "
               "want = json.loads(sys.argv[2]); bad = [name for name, digest in want.items() "
               "if not (folder / name).is_file() "
               "or hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]; "
               "print(json.dumps(bad)); sys.exit(1 if bad else 0)")


@dataclass
class LocalBundle:
    name: str  # the local folder's name: the report's row and OUT/<device>/<name>
    path: Path
    manifest: Manifest
    key: str  # the bundle's identity: sha256 of manifest.json (which lists every file's sha256), and of its signature
    files: dict[str, str]  # relative path -> sha256

    @property
    def runtime(self) -> str:
        return self.manifest.runtime.name


def read_bundles(paths: Sequence[Path]) -> list[LocalBundle]:
    """Read and hash-check each local bundle before anything connects. What is pushed is what the manifest lists
    (check_files: each a regular file inside the folder, no symbolic link on the way, with its recorded sha256),
    never whatever else the folder holds."""

    bundles: list[LocalBundle] = []
    for path in map(Path, paths):
        manifest = read_manifest(path)
        check_files(path, manifest)
        manifest_file = path / MANIFEST_FILE
        if manifest_file.is_symlink():
            raise RemoteError(f"{path}: {MANIFEST_FILE} is a symbolic link; bundles hold plain files")
        files = {MANIFEST_FILE: sha256_file(manifest_file), **dict(manifest.entries())}
        key = files[MANIFEST_FILE][:20]
        signature = path / SIGNATURE_FILE
        if signature.is_file() and not signature.is_symlink():  # a signed bundle travels with its signature
            files[SIGNATURE_FILE] = sha256_file(signature)
            key = hashlib.sha256((files[MANIFEST_FILE] + files[SIGNATURE_FILE]).encode()).hexdigest()[:20]
        bundle = LocalBundle(path.resolve().name, path, manifest, key, files)
        if any(b.name == bundle.name for b in bundles):
            raise RemoteError(f"two bundles are named {bundle.name!r}; give them different folder names")
        bundles.append(bundle)
    if not bundles:
        raise RemoteError("give at least one bundle")
    return bundles


async def ensure_pushed(board: Board, bundle: LocalBundle, bundles_dir: PurePosixPath, python: str,
                         temporaries: list[str]) -> bool:
    """Push the bundle unless the board has it already; True when something was pushed."""
    final = str(bundles_dir / bundle.key)
    if await board.exists(final):
        return False
    partial = f"{final}.partial-{secrets.token_hex(4)}"
    temporaries.append(partial)
    await board.run(["mkdir", "-p", partial], what="creating the bundle folder")
    for relative in bundle.files:
        parent = PurePosixPath(partial, relative).parent
        if str(parent) != partial:
            await board.run(["mkdir", "-p", str(parent)], what="creating the bundle folder")
        await board.put(bundle.path / relative, str(PurePosixPath(partial, relative)))
    await board.run([python, "-c", _HASH_CHECK, partial, json.dumps(bundle.files)],
                    what=f"checking {bundle.name}'s hashes on arrival")
    await board.run(["mv", "-T", partial, final], what="committing the bundle")
    temporaries.remove(partial)
    return True


async def push_trusted_key(board: Board, work: PurePosixPath, key: str | None,
                            temporaries: list[str]) -> str | None:
    """The run's trusted public key on the board (work/trusted-<sha>.pub), pushed once; None without one."""
    if key is None:
        return None
    remote = str(work / f"trusted-{sha256_file(Path(key))[:16]}.pub")
    if not await board.exists(remote):
        partial = f"{remote}.partial-{secrets.token_hex(4)}"
        temporaries.append(partial)
        await board.put(Path(key), partial)
        await board.run(["mv", "-T", partial, remote], what="committing the trusted key")
        temporaries.remove(partial)
    return remote
