"""Signed bundles: a device that runs only what its builder signed.

``manifest.sig`` beside ``manifest.json`` is a DSSE envelope (the signature envelope of in-toto and of OpenSSF
model-signing): its payload is the manifest's exact bytes, signed with Ed25519 over DSSE's pre-authentication
encoding. The manifest holds every file's sha256, so a valid signature plus the hash check covers the whole
bundle. Where this differs from model-signing (and why) is in docs/promises.md.

The trusted key is a device setting: a command's ``--trust KEY`` or ``$MAIT_TRUSTED_KEY`` (a PEM public key);
with one set, an unsigned bundle, one signed by another key, or one whose manifest differs from what was signed
is refused in one line. Keys: ``openssl genpkey -algorithm ed25519`` or ``mait-deploy keygen``. Uses the
``cryptography`` package (the ``signing`` extra); the native runner checks the same envelope with OpenSSL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mait_deploy._deps import require
from mait_deploy._io import atomic_path
from mait_deploy.device.manifest import MANIFEST_FILE, check_files, read_manifest
from mait_deploy.errors import BundleError, MaitDeployError, UnsupportedOption, printable

SIGNATURE_FILE = "manifest.sig"
PAYLOAD_TYPE = "application/vnd.mait-deploy.manifest+json"
TRUSTED_KEY_ENV = "MAIT_TRUSTED_KEY"
_MAX_SIGNATURE_BYTES = 4 << 20  # the payload is the manifest (at most 1 MiB) in base64
_MAX_KEY_BYTES = 64 << 10


def trusted_key(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The key bundles must be signed with: the command's, else $MAIT_TRUSTED_KEY, else none."""
    where = explicit or os.environ.get(TRUSTED_KEY_ENV)
    return Path(where) if where else None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over (type and body, length-prefixed)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _crypto() -> Any:
    require("cryptography", extra="signing")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


def _read_key(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise UnsupportedOption(f"{what} {printable(str(path))} is not a file")
    if path.stat().st_size > _MAX_KEY_BYTES:
        raise UnsupportedOption(f"{what} {printable(str(path))} is too large to be a key")
    return path.read_bytes()


def load_public_key(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(_read_key(path, "trusted key"))
    except (ValueError, TypeError) as err:
        raise UnsupportedOption(f"trusted key {printable(str(path))} is not a PEM public key") from err
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UnsupportedOption(f"trusted key {printable(str(path))} is not an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Any:
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(_read_key(path, "signing key"), password=None)
    except (ValueError, TypeError) as err:
        raise UnsupportedOption(f"signing key {printable(str(path))} is not an unencrypted PEM private key "
                                f"({str(err).splitlines()[0][:80] if str(err) else type(err).__name__})") from err
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UnsupportedOption(f"signing key {printable(str(path))} is not an Ed25519 key (make one with "
                                f"`openssl genpkey -algorithm ed25519 -out KEY.pem` or `mait-deploy keygen`)")
    return key


def key_id(public_key: Any) -> str:
    """sha256 of the raw public key, hex: names the key in the envelope (a hint; never trusted by itself)."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_bundle(folder: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> Path:
    """Sign ``folder``'s manifest (after checking every file against it) with the Ed25519 key at ``key_path``;
    writes ``manifest.sig`` (replacing an earlier signature of this tool) and returns its path."""

    folder = Path(folder)
    key = load_private_key(Path(key_path))
    check_files(folder, read_manifest(folder))  # never sign a bundle whose files differ from its manifest
    payload = (folder / MANIFEST_FILE).read_bytes()
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
                "signatures": [{"keyid": key_id(key.public_key()),
                                "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}]}
    target = folder / SIGNATURE_FILE
    with atomic_path(target, replace=True) as temp:
        Path(temp).write_text(json.dumps(envelope, indent=2) + "\n", encoding="utf-8")
    return target


def _envelope(folder: Path) -> tuple[bytes, list[bytes]]:
    path = folder / SIGNATURE_FILE
    name = printable(str(folder))
    if not path.is_file():
        raise BundleError(f"{name} is not signed (no {SIGNATURE_FILE}) and a trusted key is set")
    if path.stat().st_size > _MAX_SIGNATURE_BYTES:
        raise BundleError(f"{name}: {SIGNATURE_FILE} is too large to be a signature")
    try:
        envelope = json.loads(path.read_bytes())
        payload_type, payload = envelope["payloadType"], envelope["payload"]
        signatures = [entry["sig"] for entry in envelope["signatures"]]
        if not isinstance(payload_type, str) or not isinstance(payload, str) \
                or not all(isinstance(sig, str) for sig in signatures):
            raise TypeError("not strings")
        if payload_type != PAYLOAD_TYPE:
            raise BundleError(f"{name}: {SIGNATURE_FILE} signs a {printable(payload_type)[:80]}, not a mait-deploy "
                              f"manifest")
        return (base64.b64decode(payload, validate=True),
                [base64.b64decode(sig, validate=True) for sig in signatures])
    except BundleError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError, binascii.Error) as err:
        raise BundleError(f"{name}: {SIGNATURE_FILE} is not a DSSE envelope") from err


def verify_signature(folder: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> str:
    """Check ``folder``'s signature against the trusted public key; returns the key's id. BundleError unless a
    signature by that key covers the manifest's exact bytes (the caller then hashes every file against it)."""

    folder = Path(folder)
    key = load_public_key(Path(key_path))  # first: without cryptography, the line names the extra to install
    from cryptography.exceptions import InvalidSignature

    payload, signatures = _envelope(folder)
    message = pae(PAYLOAD_TYPE, payload)
    for signature in signatures:
        try:
            key.verify(signature, message)
            break
        except InvalidSignature:
            continue
    else:
        raise BundleError(f"{printable(str(folder))}: {SIGNATURE_FILE} is not a valid signature by the trusted key "
                          f"{printable(Path(key_path).name)}")
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file() or manifest.stat().st_size > _MAX_SIGNATURE_BYTES or manifest.read_bytes() != payload:
        raise BundleError(f"{printable(str(folder))}: {MANIFEST_FILE} differs from the manifest its signature covers")
    return key_id(key)


def generate_keys(private_path: str | os.PathLike[str], force: bool = False) -> tuple[Path, Path]:
    """A new Ed25519 key pair: PRIVATE (PKCS#8 PEM, mode 0600) and PRIVATE.pub (the public key to trust)."""
    serialization, ed25519 = _crypto()
    private, public = Path(private_path), Path(f"{private_path}.pub")
    for path, load in ((private, load_private_key), (public, load_public_key)):
        if path.exists() and not force:
            raise MaitDeployError(f"{printable(str(path))} exists; pass --force to replace it")
        if path.exists():  # --force replaces only an Ed25519 key file (what keygen writes), nothing else
            try:
                load(path)
            except UnsupportedOption:
                raise MaitDeployError(f"{printable(str(path))} is not an Ed25519 key file; --force replaces only "
                                      f"what mait-deploy wrote") from None
    key = ed25519.Ed25519PrivateKey.generate()
    if force:
        private.unlink(missing_ok=True)
    # Created 0600 from the start (never readable by others, not even for a moment), and never over a file.
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with atomic_path(public, replace=force) as temp:
        Path(temp).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
