"""Pack a bundle into one .tar.gz for copying to a device, and unpack it there safely.

An archive from elsewhere is untrusted: before anything is written, every member must be a plain file (or a
folder) with a relative name that stays inside the bundle; links, devices, absolute names, ``..``, duplicate names
and oversized contents are refused with the offending name. Extraction goes to a temporary folder beside the
destination, the unpacked bundle's manifest and file hashes are checked, and only then is it renamed into place.
numpy-free and torch-free (standard library only).
"""

from __future__ import annotations

import gzip
import json
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from mait_deploy._io import MAX_JSON_BYTES, atomic_dir, atomic_path, check_output
from mait_deploy.device.manifest import MANIFEST_FILE, Manifest, check_files, read_manifest
from mait_deploy.device.runner import runner_class
from mait_deploy.device.signing import SIGNATURE_FILE
from mait_deploy.errors import BundleError, MaitDeployError

MAX_UNPACKED_BYTES = 8 << 30  # a MaiT bundle is MBs to a few hundred MBs; refuse archive bombs well before disk-full


def bundle_members(folder: Path) -> list[str]:
    """The files a bundle consists of (manifest, artifact, extra files, golden outputs), checked against their
    hashes: a tampered bundle is not packed. Caches built on the device (e.g. TensorRT engines) are left out."""

    manifest = read_manifest(folder)
    check_files(folder, manifest)
    signed = [SIGNATURE_FILE] if (folder / SIGNATURE_FILE).is_file() else []
    return sorted({*_member_names(manifest), *signed})


def _member_names(manifest: Manifest) -> list[str]:
    """The files a bundle holds: its manifest and the files it lists."""
    names = [MANIFEST_FILE, *(path for path, _ in manifest.entries())]
    return sorted({str(PurePosixPath(name)) for name in names})


def _allowed_names(manifest: Manifest) -> set[str]:
    """What a bundle may hold: its files and a signature of its manifest (optional)."""
    return {*_member_names(manifest), SIGNATURE_FILE}


def pack_bundle(bundle: str | Path, archive: str | Path, force: bool = False) -> Path:
    """Write ``bundle`` as a gzip'd tar of its files (sorted, owner root, mode 0644, no timestamps)."""
    folder, target = Path(bundle), Path(archive)
    names = bundle_members(folder)
    check_output(target, force, ours=archive_ownership, what="bundle archive")
    with atomic_path(target, suffix=".tar.gz", replace=force) as temp:
        # gzip's header would carry the time of packing and the (temporary) file name: without both, the same
        # bundle always gives the same bytes.
        with open(temp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as stream, \
                tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                info = tarfile.TarInfo(name)
                info.size = (folder / name).stat().st_size
                info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
                with open(folder / name, "rb") as handle:
                    tar.addfile(info, handle)
    return target


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> None:
    name = member.name
    path = PurePosixPath(name)
    if member.issym() or member.islnk():
        raise BundleError(f"archive member {name!r} is a link (to {member.linkname!r}); bundles hold plain files")
    if not (member.isfile() or member.isdir()):
        raise BundleError(f"archive member {name!r} is not a regular file (device, fifo or other special file)")
    if member.isdir() and name.strip("/") in ("", "."):
        return  # the archive's own root ("./" from `tar -C bundle .`)
    if not name or path.is_absolute() or name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise BundleError(f"archive member {name!r} has an absolute path")
    if ".." in path.parts or "\\" in name:
        raise BundleError(f"archive member {name!r} escapes the bundle folder")
    normalised = str(path)
    if normalised in seen:
        raise BundleError(f"archive member {name!r} appears twice")
    seen.add(normalised)


def _check_against_manifest(tar: tarfile.TarFile, members: list[tarfile.TarInfo], source: Path) -> None:
    """Read the packed manifest first and refuse members it does not list, or larger than it says."""
    entry = next(m for m in members if str(PurePosixPath(m.name)) == MANIFEST_FILE)
    if not entry.isfile() or entry.size > MAX_JSON_BYTES:
        raise BundleError(f"{source}: {MANIFEST_FILE} is not a plain file of a manifest's size")
    handle = tar.extractfile(entry)
    try:
        data = json.loads(handle.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise BundleError(f"{source}: {MANIFEST_FILE} is unreadable: {str(err)[:200]}") from err
    manifest = Manifest.from_dict(data, f"{source}: {MANIFEST_FILE}")
    sizes = {str(PurePosixPath(e.path)): e.bytes for e in (manifest.artifact, *manifest.files)}
    listed = _allowed_names(manifest)
    for member in members:
        name = str(PurePosixPath(member.name))
        if not member.isfile() or name == MANIFEST_FILE:
            continue
        if name not in listed:
            raise BundleError(f"{source} holds a file its manifest does not list: {name}")
        if name in sizes and member.size > sizes[name]:  # a smaller one fails its sha256 after extraction
            raise BundleError(f"{source}: {name} is {member.size} bytes, its manifest says {sizes[name]}")


def bundle_ownership(folder: Path) -> str | None:
    """None when ``folder`` is a bundle mait-deploy wrote (a readable manifest, no file it does not list, apart
    from the engine cache a device adds), else why not: ``--force`` replaces only such folders."""

    try:
        manifest = read_manifest(folder)
        caches = set(runner_class(manifest.runtime.name).cache_dirs)
    except MaitDeployError:
        return "no readable manifest.json of a known runtime"
    listed = _allowed_names(manifest)
    for path in sorted(Path(folder).rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if name not in listed and name.split("/")[0] not in caches:
            return f"it holds {name}, which its manifest does not list"
    return None


def archive_ownership(path: Path) -> str | None:
    """None when ``path`` is a bundle archive (a tar whose top level holds a manifest), else why not."""
    try:
        with tarfile.open(path, "r:*") as tar:
            if any(str(PurePosixPath(m.name)) == MANIFEST_FILE for m in tar):
                return None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return "not a tar archive"
    return "an archive without a bundle manifest"


def unpack_bundle(archive: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Check every member of ``archive``, extract it to ``out_dir`` and verify the bundle's hashes; on any
    failure nothing is left at ``out_dir`` (and an existing bundle there stays as it was)."""
    source, target = Path(archive), Path(out_dir)
    if not source.is_file():
        raise BundleError(f"archive not found: {source}")
    check_output(target, force, kind="dir", ours=bundle_ownership, what="bundle")
    try:
        tar = tarfile.open(source, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        # tarfile's own message lists every compression it tried, one line each: say it in one
        raise BundleError(f"{source} is not a readable tar archive (gzip, bzip2, xz or plain tar)") from err
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise BundleError(f"{source} is truncated or corrupt: {err}") from err
        seen: set[str] = set()
        for member in members:
            _check_member(member, seen)
        total = sum(member.size for member in members if member.isfile())
        if total > MAX_UNPACKED_BYTES:
            raise BundleError(f"{source} would unpack to {total / 2**30:.1f} GiB (limit "
                              f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB); refusing")
        if MANIFEST_FILE not in seen:
            raise BundleError(f"{source} has no {MANIFEST_FILE} at its top level: not a packed bundle")
        _check_against_manifest(tar, members, source)  # before anything is written
        with atomic_dir(target, replace=force) as temp:
            try:
                # The "data" filter (Python >= 3.10.12 / 3.11.4) is a second line of defence behind the checks
                # above; older Pythons on devices (e.g. 3.11.2) rely on those checks alone.
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(temp, members=members, filter="data")
                else:
                    tar.extractall(temp, members=members)
            except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
                raise BundleError(f"{source} could not be unpacked: {err}") from err

            try:
                manifest = read_manifest(temp)
                check_files(temp, manifest)
            except BundleError as err:  # it names the temporary folder: name the user's archive instead
                message = str(err).replace(f"{temp / MANIFEST_FILE}", f"{source}: {MANIFEST_FILE}")
                raise BundleError(message.replace(str(temp), str(source))) from err
            expected = _allowed_names(manifest)
            extra = sorted(name for name in seen if (temp / name).is_file() and name not in expected)
            if extra:
                raise BundleError(f"{source} holds files its manifest does not list: {', '.join(extra[:5])}")
    return target
