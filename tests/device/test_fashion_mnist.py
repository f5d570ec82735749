import gzip

import numpy as np
import pytest

from mait_deploy.device.data import builtin, fashion_mnist
from mait_deploy.errors import DataError


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_idx_reader_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    got_images, got_labels = fashion_mnist.load_split("test", tmp_path)
    assert (got_images == images).all() and (got_labels == labels).all() and got_labels.dtype == np.int64


def test_idx_reader_rejects_bad_files(tmp_path):
    path = tmp_path / "x-idx"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="not an IDX"):
        fashion_mnist.read_idx(path)
    good = _write_idx(tmp_path / "y-idx", np.zeros((2, 3, 3)))
    good.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(DataError, match="promises"):
        fashion_mnist.read_idx(good)
    with pytest.raises(DataError, match="missing Fashion-MNIST"):
        fashion_mnist.load_split("train", tmp_path)


def test_shipped_sample_is_stratified_and_labelled():
    train = builtin.load_sample("train")
    test = builtin.load_sample("test")
    assert train.images.shape == (1000, 28, 28) and test.images.shape == (5000, 28, 28)
    assert np.bincount(train.labels).tolist() == [100] * 10
    assert np.bincount(test.labels).tolist() == [500] * 10
    assert "shipped sample" in test.origin


@pytest.mark.skipif(not fashion_mnist.is_available(), reason="dataset-fashion-mnist is not installed")
def test_full_set_and_sample_agree():
    full = builtin.load_builtin("test")
    assert full.images.shape == (10000, 28, 28) and "full set" in full.origin
    with np.load(builtin.SAMPLE_PATH) as data:
        index = data["test_index"]
        assert (full.images[index] == data["test_images"]).all()
        assert (full.labels[index] == data["test_labels"]).all()
