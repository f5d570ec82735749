"""Property-based tests (hypothesis) of the manifest parser and the preprocessing: arbitrary input either parses
into something valid or raises the library's own one-line error, never anything else."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mait_deploy.config import MaiTConfig, PreprocessConfig
from mait_deploy.device.manifest import Manifest
from mait_deploy.device.preprocess import preprocess
from mait_deploy.errors import BundleError, ConfigError, DataError
from tests.helpers import GREY, VALID

RGB = PreprocessConfig(input_size=32, channels=3)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                                              children, max_size=4),
                           max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(VALID) + ["extra"]), json_values, max_size=14))
def test_arbitrary_manifests_never_crash_the_parser(data):
    try:
        manifest = Manifest.from_dict(data)
    except BundleError:
        return
    assert manifest.schema_version >= 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(VALID)), json_values)
def test_one_corrupted_field_is_caught_or_harmless(key, value):
    data = json.loads(json.dumps(VALID))
    data[key] = value
    try:
        manifest = Manifest.from_dict(data)
    except BundleError:
        return
    # If it parsed, the fields the runner relies on are sound.
    assert manifest.batch == "dynamic" or (isinstance(manifest.batch, int) and manifest.batch >= 1)
    assert not manifest.artifact.path.startswith("/") and ".." not in manifest.artifact.path.split("/")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.bool_]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40)),
       st.sampled_from([GREY, RGB]))
def test_preprocess_gives_model_input_or_a_data_error(array, config):
    try:
        batch = preprocess(array, config)
    except DataError:
        return
    assert batch.dtype == np.float32 and batch.ndim == 4
    assert batch.shape[1:] == (config.channels, config.input_size, config.input_size)
    assert np.isfinite(batch).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.integers(1, 64), st.sampled_from([GREY, RGB]))
def test_any_image_size_becomes_the_model_size(height, width, config):
    image = np.random.default_rng(height * 100 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    batch = preprocess(image, config)
    assert batch.shape == (1, config.channels, config.input_size, config.input_size)


def test_known_layouts():
    grey_batch = np.zeros((5, 28, 28), np.uint8)
    assert preprocess(grey_batch, GREY).shape == (5, 1, 28, 28)
    nchw = np.zeros((2, 3, 32, 32), np.float32)
    assert preprocess(nchw, RGB).shape == (2, 3, 32, 32)
    with pytest.raises(DataError, match="NaN"):
        preprocess(np.full((28, 28), np.nan, np.float32), GREY)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        preprocess(np.full((28, 28), 7.0, np.float32), GREY)
    with pytest.raises(DataError, match="empty"):
        preprocess(np.zeros((0, 28, 28), np.uint8), GREY)


def test_the_valid_manifest_parses():
    assert Manifest.from_dict(json.loads(json.dumps(VALID))).golden.tolerance.max_abs_diff == 1e-3


CONFIG = MaiTConfig(name="tiny", img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=32, depth=2,
                    num_heads=4, preprocess=PreprocessConfig(input_size=16, channels=1, mean=(0.5,), std=(0.25,)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CONFIG.to_dict())), json_values)
def test_one_wrong_config_field_is_a_config_error_or_harmless(key, value):
    """A config.json field of any JSON type or value: a ConfigError naming it, or a config that is sound."""
    data = CONFIG.to_dict()
    data[key] = value
    try:
        config = MaiTConfig.from_dict(data)
    except ConfigError:
        return
    assert config.num_patches >= 1 and config.embed_dim % config.num_heads == 0
    config.mask.heads(config.num_heads)  # resolvable
