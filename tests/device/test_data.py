import numpy as np
import pytest
from PIL import Image

from mait_deploy.config import PreprocessConfig
from mait_deploy.device.data.sources import check_disjoint, load_dataset
from mait_deploy.errors import DataError

GREY = PreprocessConfig(input_size=28, channels=1, mean=(0.286,), std=(0.353,))
LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _png(path, value=128, size=(28, 28), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * len(mode)).save(path)
    return path


def test_builtin_calibration_and_evaluation_are_disjoint_and_stratified():
    calib = load_dataset("fashion-mnist", "calibration", GREY, LABELS, count=100, seed=1)
    evals = load_dataset("fashion-mnist", "evaluation", GREY, LABELS, count=200, seed=1)
    assert calib.inputs.shape == (100, 1, 28, 28) and calib.inputs.dtype == np.float32
    assert np.bincount(calib.labels).tolist() == [10] * 10
    assert np.bincount(evals.labels).tolist() == [20] * 10
    assert "train" in calib.origin and "test" in evals.origin
    again = load_dataset("fashion-mnist", "calibration", GREY, LABELS, count=100, seed=1)
    assert np.array_equal(again.inputs, calib.inputs)


def test_labelled_folder_by_label_name_and_index(tmp_path):
    for i in range(3):
        _png(tmp_path / "Trouser" / f"{i}.png", 50 * i)
        _png(tmp_path / "8" / f"{i}.jpg", 200)
    data = load_dataset(tmp_path, "evaluation", GREY, LABELS)
    assert len(data) == 6 and sorted(set(data.labels.tolist())) == [1, 8]


def test_unlabelled_folder_mixed_sizes_and_modes(tmp_path):
    _png(tmp_path / "a.png", size=(100, 60))
    _png(tmp_path / "b.bmp", mode="RGB")
    _png(tmp_path / "c.png", mode="RGBA")
    Image.new("CMYK", (30, 30), (0, 0, 0, 0)).save(tmp_path / "d.jpg")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(tmp_path / "e.png")
    data = load_dataset(tmp_path, "calibration", GREY)
    assert data.inputs.shape == (5, 1, 28, 28) and data.labels is None
    assert np.isfinite(data.inputs).all()
    # 16-bit 40000/65535 of full scale, not clipped to white
    pixel = data.inputs[-1, 0, 14, 14] * 0.353 + 0.286
    assert abs(pixel - 40000 / 65535) < 0.01


def test_corrupt_images_are_skipped_with_a_warning(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    good = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="skipped 2"):
        data = load_dataset(tmp_path, "calibration", GREY)
    assert len(data) == 1 and len(data.skipped) == 2


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "holds no files"),
    (lambda p: (p / "notes.txt").write_text("hi"), "holds no images"),
    (lambda p: (p / "x.png").write_bytes(b"not an image"), "no readable images"),
])
@pytest.mark.filterwarnings("ignore:skipped")
def test_bad_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path, "calibration", GREY)


def test_unknown_class_folder(tmp_path):
    _png(tmp_path / "Spaceship" / "a.png")
    with pytest.raises(DataError, match="Spaceship"):
        load_dataset(tmp_path, "evaluation", GREY, LABELS)


def test_fewer_images_than_asked(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png")
    assert len(load_dataset(tmp_path, "calibration", GREY, count=10)) == 3  # default: use what there is
    with pytest.raises(DataError, match="3 images, 10 were asked"):
        load_dataset(tmp_path, "calibration", GREY, count=10, strict=True)


def test_npz_sources(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "ok.npz", images=images, labels=np.arange(20) % 10)
    data = load_dataset(tmp_path / "ok.npz", "evaluation", GREY, LABELS, count=10)
    assert len(data) == 10 and np.bincount(data.labels).tolist() == [1] * 10
    np.save(tmp_path / "plain.npy", images.astype(np.float32) / 255)
    assert load_dataset(tmp_path / "plain.npy", "calibration", GREY).labels is None
    np.savez(tmp_path / "shape.npz", images=np.zeros((5, 28), np.uint8))
    with pytest.raises(DataError, match="expected images"):
        load_dataset(tmp_path / "shape.npz", "calibration", GREY)
    np.savez(tmp_path / "dtype.npz", images=np.zeros((5, 28, 28), np.int32))
    with pytest.raises(DataError, match="uint8"):
        load_dataset(tmp_path / "dtype.npz", "calibration", GREY)
    np.savez(tmp_path / "labels.npz", images=images, labels=np.arange(20) + 5)
    with pytest.raises(DataError, match="labels outside"):
        load_dataset(tmp_path / "labels.npz", "evaluation", GREY, LABELS)
    np.savez(tmp_path / "nokey.npz", pixels=images)
    with pytest.raises(DataError, match="no 'images'"):
        load_dataset(tmp_path / "nokey.npz", "calibration", GREY)


def test_missing_source_and_overlap(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope", "calibration", GREY)
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "same.npz", images=images, labels=np.arange(10))
    a = load_dataset(tmp_path / "same.npz", "calibration", GREY)
    b = load_dataset(tmp_path / "same.npz", "evaluation", GREY, LABELS)
    with pytest.raises(DataError, match="also calibration images"):
        check_disjoint(a, b)
