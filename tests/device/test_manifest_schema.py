"""The bundle contract's JSON Schema: generated from the typed manifest, checked in, and what every reader checks."""

import json

import jsonschema

from mait_deploy.device.manifest import Manifest, read_manifest
from mait_deploy.device.manifest_schema import SCHEMA_FILE, manifest_schema


def test_the_checked_in_schema_is_the_generated_one():
    # Regenerate with `python -m mait_deploy.device.manifest_schema` after changing a manifest dataclass or a bound.
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(json.dumps(manifest_schema()))


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_a_built_manifest_validates_and_round_trips(ort_fp32_bundle):
    data = json.loads((ort_fp32_bundle / "manifest.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))  # the file a native runner reads, as it is
    manifest = read_manifest(ort_fp32_bundle)
    assert Manifest.from_dict(manifest.to_dict()).to_dict() == manifest.to_dict() == data


def test_every_field_of_the_manifest_is_in_the_schema():
    properties = json.loads(SCHEMA_FILE.read_text())["properties"]
    assert set(properties) == set(Manifest.__dataclass_fields__)
    assert properties["model"]["properties"]["num_classes"]["maximum"] == 100_000
    assert set(properties["golden"]["required"]) == {"file", "sha256", "count", "tolerance"}
    assert not properties["golden"]["additionalProperties"]
