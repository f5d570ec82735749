"""The bundle contract as a JSON Schema: generated from the typed manifest (the dataclasses in manifest.py and the
model config they carry) plus the bounds below, checked in as ``assets/manifest.schema.json`` (the file a native
runner validates against too), and enforced by ``Manifest.from_dict`` before any value is used.

Regenerate after changing a manifest dataclass or a bound: ``python -m mait_deploy.device.manifest_schema``
(tests/device/test_manifest_schema.py fails while the checked-in file and the dataclasses disagree).
"""

from __future__ import annotations

import json
from typing import Any

from mait_deploy.backends import REGISTRY
from mait_deploy.config import MIN_CROP_PCT, MaiTConfig, MaskConfig, PreprocessConfig
from mait_deploy.device.logits import GateResult, Tolerance
from mait_deploy.device.manifest import Manifest
from mait_deploy.device.manifest_validation import SCHEMA_FILE
from mait_deploy.device.runner import runner_class
from mait_deploy.precision import PRECISIONS
from mait_deploy.typed_json import SchemaBuilder

SCHEMA_ID = "https://mait-deploy.invalid/manifest.schema.json"  # a name, never fetched

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


def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), from the dataclasses and BOUNDS."""

    schema = SchemaBuilder(BOUNDS, TYPED_DICTS, REQUIRED_IN).for_dataclass(Manifest)
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
