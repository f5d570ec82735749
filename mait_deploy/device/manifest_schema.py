"""The bundle contract as a JSON Schema: generated from the typed manifest (the dataclasses in manifest.py and the
model config they carry) plus the bounds below, checked in as ``assets/manifest.schema.json`` (the file a native
runner validates against too), and enforced by ``Manifest.from_dict`` before any value is used.

Regenerate after changing a manifest dataclass or a bound: ``python -m mait_deploy.device.manifest_schema``
(tests/device/test_manifest_schema.py fails while the checked-in file and the dataclasses disagree).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Mapping

from mait_deploy.config import MIN_CROP_PCT, MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.device.logits import GateResult, Tolerance
from mait_deploy.device.manifest_validation import SCHEMA_FILE
from mait_deploy.precision import PRECISIONS

SCHEMA_ID = "https://mait-deploy.invalid/manifest.schema.json"  # a name, never fetched

# Defaults for anything not bounded below: a manifest is kilobytes, so every string, array and object is small.
MAX_STRING = 4096
MAX_ITEMS = 4096
MAX_PROPERTIES = 256
MAX_CLASSES = 100_000
MAX_IMAGE_SIDE = 2048  # a bundle's input side; 3 x 2048 x 2048 floats is 48 MiB per image
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
LABEL_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"
FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 255}

# Bounds by dotted path ("*" = every item of an array); they replace or extend the generated keywords.
BOUNDS: dict[str, dict[str, Any]] = {
    "schema_version": {"minimum": 1, "maximum": 3},
    "created": {"maxLength": 64},
    "target": {"minLength": 1, "maxLength": 64},
    "precision": {"enum": list(PRECISIONS)},
    "batch": {"anyOf": [{"const": "dynamic"}, {"type": "integer", "minimum": 1, "maximum": 65536}]},
    "artifact.path": FILE_NAME, "artifact.sha256": SHA256, "artifact.bytes": {"minimum": 0, "maximum": 2**40},
    "files": {"maxItems": 64}, "files.*.path": FILE_NAME, "files.*.sha256": SHA256,
    "files.*.bytes": {"minimum": 0, "maximum": 2**40},
    "inputs": {"minItems": 1, "maxItems": 8}, "outputs": {"minItems": 1, "maxItems": 8},
    "inputs.*.name": {"minLength": 1, "maxLength": 256}, "outputs.*.name": {"minLength": 1, "maxLength": 256},
    "inputs.*.dtype": {"maxLength": 32}, "outputs.*.dtype": {"maxLength": 32},
    "inputs.*.shape": {"minItems": 1, "maxItems": 8, "items": {"anyOf": [
        {"const": "batch"}, {"type": "integer", "minimum": 1, "maximum": 65536}]}},
    "outputs.*.shape": {"minItems": 1, "maxItems": 8, "items": {"anyOf": [
        {"const": "batch"}, {"type": "integer", "minimum": 1, "maximum": MAX_CLASSES}]}},
    "runtime.name": {"minLength": 1, "maxLength": 64}, "runtime.extra": {"maxLength": 64},
    "runtime.options": {"maxProperties": 64},
    "golden.file": FILE_NAME, "golden.sha256": SHA256, "golden.count": {"minimum": 1, "maximum": 4096},
    "golden.kind": {"enum": ["images", "inputs", None]},
    "golden.recorded_on": {"maxProperties": 32},
    # A golden file holds up to 4096 samples of at most 3 x 2048 x 2048 (the bounds above); shapes stay small.
    "golden.arrays": {"minItems": 3, "maxItems": 3},
    "golden.arrays.*.name": {"enum": ["images", "inputs", "logits", "reference_logits"]},
    "golden.arrays.*.dtype": {"enum": ["uint8", "float32"]},
    "golden.arrays.*.shape": {"minItems": 2, "maxItems": 4, "items": {"type": "integer", "minimum": 1,
                                                                       "maximum": 65536}},
    "golden.arrays.*.offset": {"minimum": 0, "maximum": 2**40},
    "golden.tolerance.max_abs_diff": {"minimum": 0, "maximum": 1e9},
    "golden.tolerance.min_top1_agreement": {"minimum": 0, "maximum": 1},
    "accuracy.reference_top1": {"minimum": 0, "maximum": 1}, "accuracy.top1": {"minimum": 0, "maximum": 1},
    "accuracy.top1_agreement": {"minimum": 0, "maximum": 1}, "accuracy.drop_points": {"minimum": -100, "maximum": 100},
    "accuracy.count": {"minimum": 1, "maximum": 10**9}, "accuracy.max_drop": {"minimum": 0, "maximum": 100},
    "accuracy.seconds": {"minimum": 0}, "accuracy.max_abs_diff": {"minimum": 0},
    "accuracy.mean_abs_diff": {"minimum": 0},
    "accuracy.sampled_from": {"minimum": 1, "maximum": 10**9},
    "accuracy.drop_interval": {"minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": -100,
                                                                       "maximum": 100}},
    "model.name": {"maxLength": 256},
    "model.num_classes": {"minimum": 1, "maximum": MAX_CLASSES},
    "model.img_size": {"minimum": 1, "maximum": MAX_IMAGE_SIDE},
    "model.in_chans": {"enum": [1, 3]},
    # A label is printed on a line of its own by predict and the native runner: no control characters.
    "model.labels": {"maxItems": MAX_CLASSES, "items": {"type": "string", "minLength": 1, "maxLength": 256,
                                                        "pattern": LABEL_PATTERN}},
    "model.preprocess.input_size": {"minimum": 1, "maximum": MAX_IMAGE_SIDE},
    "model.preprocess.channels": {"enum": [1, 3]},
    "model.preprocess.mean": {"minItems": 1, "maxItems": 3}, "model.preprocess.std": {"minItems": 1, "maxItems": 3},
    "model.preprocess.crop_pct": {"minimum": MIN_CROP_PCT, "maximum": 1},
    "model.preprocess.interpolation": {"enum": ["nearest", "bilinear", "bicubic"]},
}
# Fields of the manifest that hold a typed object the dataclass keeps as a plain dict.
TYPED_DICTS: dict[str, type] = {"model": MaiTConfig, "model.preprocess": PreprocessConfig, "model.mask": MaskConfig,
                                "golden.tolerance": Tolerance, "accuracy": GateResult}
# In the objects the model config describes, only these are required (older bundles lack newer fields, which
# then take the config's defaults).
REQUIRED_IN = {"model": ("num_classes", "img_size", "in_chans", "preprocess"),
               "model.preprocess": ("input_size", "channels", "mean", "std"), "model.mask": ()}


def _for_type(hint: Any, path: str) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_for_type(arg, path) for arg in args if arg is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if hint is Any:
        return {}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string", "maxLength": MAX_STRING}
    if path in TYPED_DICTS or dataclasses.is_dataclass(hint):
        return _for_dataclass(TYPED_DICTS.get(path, hint), path)
    if origin in (list, tuple) or hint in (list, tuple):
        item = args[0] if args else Any
        return {"type": "array", "maxItems": MAX_ITEMS, "items": _for_type(item, f"{path}.*")}
    if origin in (dict, Mapping) or hint is dict:
        return {"type": "object", "maxProperties": MAX_PROPERTIES}
    raise TypeError(f"no JSON Schema for {hint!r} at {path}")


def _for_dataclass(cls: type, path: str = "") -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for field in dataclasses.fields(cls):
        if field.name.startswith("_"):
            continue
        child = f"{path}.{field.name}" if path else field.name
        hint = hints[field.name]
        plain_dict = hint is dict or typing.get_origin(hint) in (dict, Mapping)
        schema = _for_type(TYPED_DICTS[child] if child in TYPED_DICTS and plain_dict else hint, child)
        if child in BOUNDS:
            schema = _bounded(schema, BOUNDS[child])
        properties[field.name] = schema
        # Required: what the dataclass cannot default (older bundles lack the fields added since, which default).
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if field.name in REQUIRED_IN.get(path, ()) or (path not in REQUIRED_IN and not has_default):
            required.append(field.name)
    for item_path, bound in BOUNDS.items():  # bounds on array items ("files.*.path") reach into their schemas
        prefix = f"{path}." if path else ""
        if item_path.startswith(prefix) and ".*." in item_path[len(prefix):]:
            array, rest = item_path[len(prefix):].split(".*.", 1)
            if array in properties and "." not in rest:
                target = properties[array]
                if "anyOf" in target:  # a nullable list: bound the list, not the null
                    target = next(option for option in target["anyOf"] if option.get("type") == "array")
                items = target.setdefault("items", {})
                items.setdefault("properties", {})[rest] = _bounded(items.get("properties", {}).get(rest, {}), bound)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _bounded(schema: dict[str, Any], bound: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``bound`` applied; a nullable schema keeps its null."""
    if "anyOf" in schema and {"type": "null"} in schema["anyOf"] and "anyOf" not in bound and "enum" not in bound:
        inner = [s for s in schema["anyOf"] if s != {"type": "null"}][0]
        return {"anyOf": [{**inner, **bound}, {"type": "null"}]}
    if "anyOf" in bound or "enum" in bound or "const" in bound:
        return {key: value for key, value in {**schema, **bound}.items()
                if key not in ("type", "anyOf") or key in bound}
    return {**schema, **bound}


def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), from the dataclasses and BOUNDS."""
    from mait_deploy.device.manifest import Manifest

    schema = _for_dataclass(Manifest)
    schema["allOf"] = runtime_option_rules()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "mait-deploy bundle manifest (manifest.json)",
            "description": "Generated by `python -m mait_deploy.device.manifest_schema` from mait_deploy/device/"
                           "manifest.py; cross-field rules (label count = class count = output width, input "
                           "shape = the model's) are checked by Manifest.from_dict and the native runner.",
            **schema}


_OPTION_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def option_schema(option: Any) -> dict[str, Any]:
    """One declared runtime option (mait_deploy.options.Option) as JSON Schema: its type, choices and minimum."""
    schema: dict[str, Any] = {"type": _OPTION_TYPES[option.type]}
    if option.type is str:
        schema["maxLength"] = 256
    elif option.type in (list, dict):
        schema["maxItems" if option.type is list else "maxProperties"] = 64
    if option.choices is not None:
        schema["enum"] = list(option.choices)
    if option.minimum is not None:
        schema["minimum"] = option.minimum
    return schema


def runtime_option_rules() -> list[dict[str, Any]]:
    """For each built-in runtime, the options its runner declares are the only ones its manifests may carry (the
    native runner checks them with the same schema): one contract, generated from the declarations."""
    from mait_deploy.backends import REGISTRY
    from mait_deploy.device.runner import runner_class

    rules = []
    for name in REGISTRY:
        declared = runner_class(name).declared_options
        options = {"type": "object", "properties": {option.name: option_schema(option) for option in declared},
                   "additionalProperties": False}
        rules.append({"if": {"properties": {"runtime": {"properties": {"name": {"const": name}}}}},
                      "then": {"properties": {"runtime": {"properties": {"options": options}}}}})
    return rules


def write_schema() -> None:
    SCHEMA_FILE.write_text(json.dumps(manifest_schema(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_schema()
