"""Property-based fuzz of the two readers of user-supplied documents: the bundle manifest and the board inventory.
Any document of bounded size (64 KB) gives a valid object or one MaitDeployError, never another exception, and
stays within a memory bound (tracemalloc's peak over the read). The default run draws a few hundred examples;
CI's slow selection runs the same properties with thousands (``-m slow``)."""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mait_deploy.device.manifest import Manifest
from mait_deploy.errors import MaitDeployError
from tests.helpers import VALID

yaml = pytest.importorskip("yaml")

MAX_BYTES = 64 * 1024
MAX_PEAK = 64 * 2**20  # a read of a 64 KB document never holds more than this

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=40)
           | st.sampled_from(["dynamic", "batch", "fp32", "int8", "onnxruntime", "images", "0" * 64, "../x", "/etc"]))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=6)
                           | st.dictionaries(st.text(max_size=12), children, max_size=6), max_leaves=40)


def _paths(data, prefix=()):
    """Every (path) of a nested JSON value, to mutate one."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


MANIFEST_PATHS = [p for p in _paths(VALID) if p]


def _mutated(changes):
    data = json.loads(json.dumps(VALID))
    for path, value in changes:
        target = data
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return data


def _bounded_read(read, *args):
    tracemalloc.start()
    try:
        try:
            result = read(*args)
        except MaitDeployError as err:
            assert "\n" not in str(err) and len(str(err)) < 2000, str(err)[:300]
            result = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK, peak
    return result


def _manifest_property(changes, document):
    data = document if document is not None else _mutated(changes)
    text = json.dumps(data)
    if len(text) > MAX_BYTES:
        return
    manifest = _bounded_read(Manifest.from_dict, json.loads(text))
    if manifest is not None:  # it parsed: what the runner relies on is sound
        assert manifest.outputs[0].shape[-1] == manifest.model["num_classes"]
        assert len(manifest.labels) == manifest.model["num_classes"]
        assert not manifest.artifact.path.startswith("/") and ".." not in manifest.artifact.path.split("/")


manifest_examples = dict(changes=st.lists(st.tuples(st.sampled_from(MANIFEST_PATHS), json_values), max_size=4),
                         document=st.none() | json_values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**manifest_examples)
def test_any_manifest_is_an_object_or_one_error(changes, document):
    _manifest_property(changes, document)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**manifest_examples)
def test_any_manifest_is_an_object_or_one_error_long(changes, document):
    _manifest_property(changes, document)


KEYS = ["host", "port", "user", "runtime", "runtimes", "tags", "workdir", "install", "timeout", "python",
        "identity_file", "known_hosts", "ansible_host", "ansible_port", "colour", "vars", "hosts", "children"]
settings_values = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)
own_shape = st.fixed_dictionaries({"devices": st.dictionaries(st.text(max_size=10), settings_values | json_values,
                                                              max_size=5)},
                                  optional={"defaults": settings_values | json_values})
groups = st.recursive(st.fixed_dictionaries({}, optional={"hosts": st.dictionaries(st.text(max_size=8),
                                                                                    settings_values | json_values,
                                                                                    max_size=4),
                                                           "vars": settings_values | json_values}),
                      lambda children: st.fixed_dictionaries({}, optional={
                          "children": st.dictionaries(st.text(max_size=8), children | json_values, max_size=3)}),
                      max_leaves=8)
ansible_shape = st.fixed_dictionaries({"all": groups | json_values})
yaml_noise = st.sampled_from(["", "&a ", "*a ", "!!python/object:os.system ", "<<: *a\n", "---\n", "\t", "%YAML 1.1\n"])


def _inventory_property(document, noise, where):
    from mait_deploy.host.remote.inventory import load_inventory

    text = noise + yaml.safe_dump(document, default_flow_style=True)
    if len(text.encode()) > MAX_BYTES:
        return
    path = where / "inventory.yaml"
    path.write_text(text)
    devices = _bounded_read(load_inventory, path)
    for device in devices or ():
        assert device.name and device.host and device.runtimes and 0 < device.port < 65536


inventory_examples = dict(document=own_shape | ansible_shape | json_values, noise=yaml_noise)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**inventory_examples)
def test_any_inventory_is_devices_or_one_error(document, noise):
    with tempfile.TemporaryDirectory() as folder:
        _inventory_property(document, noise, Path(folder))


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**inventory_examples)
def test_any_inventory_is_devices_or_one_error_long(document, noise):
    with tempfile.TemporaryDirectory() as folder:
        _inventory_property(document, noise, Path(folder))
