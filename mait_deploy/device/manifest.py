"""The bundle manifest: schema, JSON round trip, validation. numpy-free and torch-free.

A bundle is a folder holding the artifact (and any side files), ``golden.npz`` and ``manifest.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mait_deploy.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "golden.npz"


@dataclass
class FileEntry:
    path: str  # relative to the bundle folder
    sha256: str
    bytes: int


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # "batch" for a dynamic axis
    dtype: str


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
    runtime: dict[str, Any]  # which runtime runs it and how: {"name", "extra", "options": {...}}
    golden: dict[str, Any]  # {"file", "sha256", "count", "tolerance": {...}}
    accuracy: dict[str, Any] | None = None  # accuracy gate results
    files: list[FileEntry] = field(default_factory=list)  # side files (OpenVINO .bin, ...)
    source: dict[str, Any] = field(default_factory=dict)  # ONNX it was built from / checked against
    tool_versions: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)  # target-specific report (quantization, plan, ...)

    @property
    def labels(self) -> list[str]:
        return list(self.model.get("labels") or [str(i) for i in range(self.model["num_classes"])])

    @property
    def preprocess(self) -> dict[str, Any]:
        return self.model["preprocess"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, folder: Path) -> None:
        (Path(folder) / MANIFEST_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

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
                          ("created", str)):
            if not isinstance(data[key], kind):
                raise BundleError(f"{origin}: {key} has the wrong type ({type(data[key]).__name__})")
        try:
            values = dict(data)
            values["artifact"] = _file_entry(data["artifact"])
            values["files"] = [_file_entry(entry) for entry in data.get("files") or []]
            values["inputs"] = [_tensor_spec(spec) for spec in data["inputs"]]
            values["outputs"] = [_tensor_spec(spec) for spec in data["outputs"]]
            manifest = cls(**values)
            manifest._check(origin)
        except BundleError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise BundleError(f"{origin} is malformed: {err}") from err
        return manifest

    def _check(self, origin: str) -> None:
        golden = self.golden
        if not isinstance(golden.get("file"), str) or not isinstance(golden.get("sha256"), str) \
                or not isinstance(golden.get("tolerance", {}), Mapping):
            raise BundleError(f"{origin}: golden needs a file name, a sha256 and a tolerance")
        if not isinstance(self.model.get("preprocess"), Mapping):
            raise BundleError(f"{origin}: model.preprocess is missing")
        for key in ("num_classes", "preprocess", "img_size", "in_chans"):
            if not isinstance(self.model, Mapping) or key not in self.model:
                raise BundleError(f"{origin}: model.{key} is missing")
        if not self.inputs or not self.outputs:
            raise BundleError(f"{origin}: inputs and outputs must not be empty")
        if not (self.batch == "dynamic" or (isinstance(self.batch, int) and self.batch >= 1)):
            raise BundleError(f"{origin}: batch must be 'dynamic' or a positive integer, got {self.batch!r}")
        for entry in [self.artifact, *self.files]:
            _check_relative(entry.path, origin)
        if "file" in self.golden:
            _check_relative(self.golden["file"], origin)
        if not isinstance(self.runtime, Mapping) or "name" not in self.runtime:
            raise BundleError(f"{origin}: runtime.name is missing")


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON: {err}") from err
    return Manifest.from_dict(data, str(path))
