"""The bundle manifest: schema, JSON round trip, validation. numpy-free and torch-free.

A bundle is a folder holding the artifact (and any side files), the golden set and ``manifest.json``. The
manifest is typed: the runtime spec, the golden entry (with its tolerance) and the accuracy gate result are
dataclasses with one reader (``Manifest.from_dict``) and one writer (``Manifest.write``).

Schema 2 added ``golden.kind`` (raw images or preprocessed inputs); schema-1 bundles are still read (the kind is
then taken from the golden file). Schema 3 stores the golden set uncompressed (``golden.bin``, its arrays laid out in
``golden.arrays``) so that a C++ program reads it with no zip or npy parser; schema 1-2 bundles keep their
``golden.npz``.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mait_deploy._io import read_json, sha256_file
from mait_deploy.config import MaiTConfig
from mait_deploy.device.logits import GateResult, Tolerance
from mait_deploy.device.manifest_validation import validate_manifest
from mait_deploy.errors import BundleError, ConfigError

SCHEMA_VERSION = 3
MANIFEST_FILE = "manifest.json"


@dataclass
class FileEntry:
    path: str  # relative to the bundle folder
    sha256: str
    bytes: int

    @classmethod
    def of(cls, folder: Path, name: str) -> "FileEntry":
        path = Path(folder) / name
        return cls(path=name, sha256=sha256_file(path), bytes=path.stat().st_size)


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # "batch" for a dynamic axis
    dtype: str


@dataclass
class RuntimeSpec:
    """Which runner runs the artifact, the pip extra it needs, and its default options (RunnerOptions.extra)."""

    name: str
    extra: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GoldenArray:
    """One array of an uncompressed golden file: little-endian, C order, ``offset`` bytes from the file's start."""

    name: str  # "images" | "inputs" | "logits" | "reference_logits"
    dtype: str  # "uint8" | "float32"
    shape: list[int]
    offset: int

    @property
    def nbytes(self) -> int:
        size = {"uint8": 1, "float32": 4}[self.dtype]
        for dim in self.shape:
            size *= dim
        return size


@dataclass
class GoldenEntry:
    file: str
    sha256: str
    count: int
    tolerance: Tolerance
    kind: str | None = None  # "images" | "inputs"; None in schema-1 bundles (read from the file)
    # What the golden outputs were computed on (CPU model, int8 class, the runtime's own description) and what the
    # tolerance allows for; None in bundles built before they were recorded.
    recorded_on: dict[str, Any] | None = None
    tolerance_basis: str | None = None
    arrays: list[GoldenArray] | None = None  # schema 3: the layout of the uncompressed file (None: an .npz)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tolerance"] = self.tolerance.to_dict()
        return data


@dataclass
class Manifest:
    schema_version: int
    created: str
    model: dict[str, Any]  # MaiTConfig.to_dict()
    target: str
    precision: str
    artifact: FileEntry
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch: int | str  # "dynamic" or a fixed size
    runtime: RuntimeSpec
    golden: GoldenEntry
    accuracy: GateResult | None = None  # accuracy gate results (None: compiled with --no-eval)
    files: list[FileEntry] = field(default_factory=list)  # side files (OpenVINO .bin, ...)
    source: dict[str, Any] = field(default_factory=dict)  # ONNX it was built from / checked against
    tool_versions: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)  # target-specific report (quantization, plan, ...)

    @property
    def labels(self) -> list[str]:
        return list(self.model.get("labels") or [str(i) for i in range(self.model["num_classes"])])

    @property
    def preprocess(self) -> dict[str, Any]:
        preprocess: dict[str, Any] = self.model["preprocess"]
        return preprocess

    @property
    def size_bytes(self) -> int:
        """What the device needs to run it: the artifact and its side files (not the golden set or the manifest);
        of the files that are alternatives to the artifact (``build.alternative_files``: TensorRT >= 11 builds
        from a strongly typed FP16 ONNX instead of the artifact) only the largest one counts."""
        alternatives = set(self.build.get("alternative_files") or ())
        choices = [self.artifact.bytes, *(entry.bytes for entry in self.files if entry.path in alternatives)]
        return max(choices) + sum(entry.bytes for entry in self.files if entry.path not in alternatives)

    def entries(self) -> list[tuple[str, str]]:
        """(relative path, sha256) of every file the bundle holds besides the manifest."""
        return [(e.path, e.sha256) for e in (self.artifact, *self.files)] + [(self.golden.file, self.golden.sha256)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["golden"] = self.golden.to_dict()
        data["accuracy"] = self.accuracy.to_dict() if self.accuracy else None
        return data

    def write(self, folder: Path) -> None:
        (Path(folder) / MANIFEST_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def create(cls, folder: Path, **values: Any) -> "Manifest":
        """A new manifest for the files in ``folder``: hashes the artifact and side files (names; a FileEntry
        given instead was hashed already), stamps schema and time."""
        artifact = values.pop("artifact")
        artifact = artifact if isinstance(artifact, FileEntry) else FileEntry.of(folder, artifact)
        files = [entry if isinstance(entry, FileEntry) else FileEntry.of(folder, entry)
                 for entry in values.pop("side_files", [])]
        return cls(schema_version=SCHEMA_VERSION,
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   artifact=artifact, files=files, **values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "manifest") -> "Manifest":
        if not isinstance(data, Mapping):
            raise BundleError(f"{origin} is not a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"{origin} has no valid schema_version")
        if version > SCHEMA_VERSION:
            raise BundleError(f"{origin} uses schema version {version}; this mait-deploy reads up to "
                              f"{SCHEMA_VERSION}: upgrade mait-deploy on this device")
        if version < 1:
            raise BundleError(f"{origin} has an invalid schema_version {version}")

        validate_manifest(data, origin)  # every field's type and bound (assets/manifest.schema.json)
        required = ("created", "model", "target", "precision", "artifact", "inputs", "outputs", "batch",
                    "runtime", "golden")
        missing = [key for key in required if key not in data]
        if missing:
            raise BundleError(f"{origin} is missing fields: {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"{origin} has unknown fields: {', '.join(unknown)}")
        for key, kind in (("model", Mapping), ("artifact", Mapping), ("runtime", Mapping), ("golden", Mapping),
                          ("inputs", list), ("outputs", list), ("target", str), ("precision", str),
                          ("created", str), ("source", Mapping), ("tool_versions", Mapping), ("build", Mapping)):
            if key in data and not isinstance(data[key], kind):
                raise BundleError(f"{origin}: {key} has the wrong type ({type(data[key]).__name__})")
        try:
            values = dict(data)
            values["artifact"] = _file_entry(data["artifact"])
            values["files"] = [_file_entry(entry) for entry in data.get("files") or []]
            values["inputs"] = [_tensor_spec(spec) for spec in data["inputs"]]
            values["outputs"] = [_tensor_spec(spec) for spec in data["outputs"]]
            values["runtime"] = _runtime_spec(data["runtime"])
            values["golden"] = _golden_entry(data["golden"], origin)
            accuracy = data.get("accuracy")
            values["accuracy"] = None if accuracy is None else GateResult.from_dict(accuracy, f"{origin}: accuracy")
            manifest = cls(**values)
            manifest._check(origin)
        except BundleError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise BundleError(f"{origin} is malformed: {err}") from err
        return manifest

    def _check(self, origin: str) -> None:
        """The rules across fields that a JSON Schema cannot state (the schema has checked each field)."""

        try:
            config = MaiTConfig.from_dict(self.model)
        except ConfigError as err:
            raise BundleError(f"{origin}: model: {err}") from err
        width = self.outputs[0].shape[-1]
        if width != config.num_classes:
            raise BundleError(f"{origin}: outputs[0] has {width} classes, model.num_classes is {config.num_classes}")
        expected = [config.in_chans, config.img_size, config.img_size]
        if list(self.inputs[0].shape[1:]) != expected:
            raise BundleError(f"{origin}: inputs[0].shape {self.inputs[0].shape} does not match the model's input "
                              f"[batch, {', '.join(map(str, expected))}]")
        if not (self.batch == "dynamic" or (isinstance(self.batch, int) and not isinstance(self.batch, bool)
                                            and self.batch >= 1)):
            raise BundleError(f"{origin}: batch must be 'dynamic' or a positive integer, got {self.batch!r}")
        for path, _ in self.entries():
            _check_relative(path, origin)
        if (self.golden.arrays is not None) != (self.schema_version >= 3):
            raise BundleError(f"{origin}: golden.arrays lays out schema 3's uncompressed golden file; schema "
                              f"{self.schema_version} " + ("needs it" if self.schema_version >= 3 else "has none"))
        if self.golden.arrays is not None:
            _check_golden_layout(self.golden, config.num_classes, origin, expected)


def _file_entry(entry: Any) -> FileEntry:
    if not isinstance(entry, Mapping):
        raise TypeError(f"file entry must be an object, got {type(entry).__name__}")
    item = FileEntry(**entry)
    if not isinstance(item.path, str) or not isinstance(item.sha256, str) or not isinstance(item.bytes, int):
        raise TypeError(f"file entry {entry!r} needs path (str), sha256 (str) and bytes (int)")
    return item


def _tensor_spec(spec: Any) -> TensorSpec:
    if not isinstance(spec, Mapping):
        raise TypeError(f"tensor spec must be an object, got {type(spec).__name__}")
    item = TensorSpec(**spec)
    if not isinstance(item.name, str) or not isinstance(item.shape, list) or not isinstance(item.dtype, str):
        raise TypeError(f"tensor spec {spec!r} needs name (str), shape (list) and dtype (str)")
    if not all((isinstance(d, int) and not isinstance(d, bool) and d > 0) or d == "batch" for d in item.shape):
        raise TypeError(f"tensor spec {item.name}: dimensions must be positive integers or 'batch'")
    return item


def _runtime_spec(spec: Mapping[str, Any]) -> RuntimeSpec:
    item = RuntimeSpec(**spec)
    if not isinstance(item.name, str) or not item.name or not isinstance(item.extra, str) \
            or not isinstance(item.options, Mapping):
        raise TypeError("runtime needs name (str), extra (str) and options (object)")
    return item


def _golden_entry(entry: Mapping[str, Any], origin: str) -> GoldenEntry:
    values = dict(entry)
    if not isinstance(values.get("tolerance"), Mapping):
        raise BundleError(f"{origin}: golden needs a file name, a sha256 and a tolerance")
    values["tolerance"] = Tolerance.from_dict(values["tolerance"], f"{origin}: golden.tolerance")
    if values.get("arrays") is not None:
        values["arrays"] = [GoldenArray(**array) for array in values["arrays"]]
    item = GoldenEntry(**values)
    if not isinstance(item.file, str) or not isinstance(item.sha256, str) or not isinstance(item.count, int) \
            or item.kind not in (None, "images", "inputs"):
        raise BundleError(f"{origin}: golden needs a file name, a sha256, a count and a kind (images or inputs)")
    if not isinstance(item.recorded_on, (Mapping, type(None))) \
            or not isinstance(item.tolerance_basis, (str, type(None))):
        raise BundleError(f"{origin}: golden.recorded_on must be an object and golden.tolerance_basis a string")
    return item


GOLDEN_ARRAY_DTYPES = {"images": "uint8", "inputs": "float32", "logits": "float32", "reference_logits": "float32"}


def _check_golden_layout(golden: GoldenEntry, num_classes: int, origin: str, sample: list[int]) -> None:
    """An uncompressed golden file's layout: the kind's samples and both logits, ``count`` rows each, packed
    back to back from offset 0 (so the file's size is the layout's and nothing is read twice or skipped)."""
    if golden.kind is None:
        raise BundleError(f"{origin}: golden.arrays needs golden.kind")
    if golden.arrays is None:
        raise BundleError(f"{origin}: golden.arrays is missing")
    names = [array.name for array in golden.arrays]
    if sorted(names) != sorted([golden.kind, "logits", "reference_logits"]):
        raise BundleError(f"{origin}: golden.arrays must be {golden.kind}, logits and reference_logits, got "
                          f"{', '.join(names)}")
    offset = 0
    for array in golden.arrays:
        if array.dtype != GOLDEN_ARRAY_DTYPES[array.name]:
            raise BundleError(f"{origin}: golden array {array.name} must be {GOLDEN_ARRAY_DTYPES[array.name]}")
        if array.shape[0] != golden.count:
            raise BundleError(f"{origin}: golden array {array.name} has {array.shape[0]} rows; golden.count is "
                              f"{golden.count}")
        if array.name != golden.kind and array.shape != [golden.count, num_classes]:
            raise BundleError(f"{origin}: golden array {array.name} must have shape [{golden.count}, {num_classes}]")
        if array.name == "inputs" and array.shape != [golden.count, *sample]:
            raise BundleError(f"{origin}: golden array inputs must have shape {[golden.count, *sample]} (the model's "
                              f"input), got {array.shape}")
        if array.name == "images" and not (len(array.shape) == 3 or (len(array.shape) == 4
                                                                    and 1 <= array.shape[3] <= 4)):
            raise BundleError(f"{origin}: golden array images must be [N, H, W] or [N, H, W, C] with 1-4 channels, "
                              f"got {array.shape}")
        if array.offset != offset:
            raise BundleError(f"{origin}: golden array {array.name} starts at {array.offset}; the arrays are packed "
                              f"back to back, so it must start at {offset}")
        offset += array.nbytes


def _check_relative(path: str, origin: str) -> None:
    """Bundle file names must stay inside the bundle folder."""
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise BundleError(f"{origin}: file path {path!r} escapes the bundle folder")


def read_manifest(folder: str | Path) -> Manifest:
    folder = Path(folder)
    if not folder.exists():
        raise BundleError(f"bundle not found: {folder}")
    if not folder.is_dir():
        raise BundleError(f"{folder} is not a bundle folder")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{folder} has no {MANIFEST_FILE}: not a bundle")
    return Manifest.from_dict(read_json(path, BundleError, "manifest"), str(path))


def check_files(folder: Path, manifest: Manifest) -> None:
    """Every file the manifest names exists and has its recorded sha256 (a tampered or truncated file is refused)."""
    root = Path(folder).resolve()
    for entry_path, digest in manifest.entries():
        path = folder / entry_path
        if root not in path.resolve().parents:  # a symbolic link anywhere on the path, not only the last part
            raise BundleError(f"{folder}: {entry_path} leads outside the bundle folder (a symbolic link)")
        if not path.is_file():
            raise BundleError(f"{folder}: {entry_path} is missing")
        if path.is_symlink():
            raise BundleError(f"{folder}: {entry_path} is a symbolic link; bundles hold plain files")
        actual = sha256_file(path)
        if actual != digest:
            raise BundleError(f"{folder}: {entry_path} does not match its sha256 in the manifest "
                              f"(modified or truncated): expected {digest[:12]}..., got {actual[:12]}...")
