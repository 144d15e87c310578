import json

import numpy as np
import pytest
from PIL import Image

from convdeploy.errors import ConvdeployError
from convdeploy.models.datasets import load_images, native_size
from convdeploy.models.spec import Preprocess

RGB = Preprocess(size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _folder(root, n_per_class=3, size=(10, 12)):
    rng = np.random.default_rng(0)
    for cls in ("cat", "ant"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    return root


def test_image_folder_sorted_classes_resize_and_normalise(tmp_path):
    data = load_images(_folder(tmp_path / "d"), RGB, progress=False)
    assert data.classes == ["ant", "cat"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images.shape == (6, 8, 8, 3) and data.images.dtype == np.uint8
    x = data.normalized(RGB, 0, 2)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x, (data.images[:2].transpose(0, 3, 1, 2) / 255 - 0.5) / 0.25,
                               rtol=1e-5, atol=1e-5)
    assert native_size(tmp_path / "d") == (10, 12)


def test_loading_is_cached_per_process(tmp_path):
    root = _folder(tmp_path / "d")
    assert load_images(root, RGB, progress=False) is load_images(root, RGB, progress=False)


def test_unreadable_image_is_named(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "cat" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ConvdeployError, match="broken.jpg"):
        load_images(root, RGB, progress=False)


def test_npz_uint8_and_float_inputs(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", x=x, y=np.arange(5))
    data = load_images(tmp_path / "u8.npz", RGB)
    assert len(data) == 5 and data.labels.tolist() == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 3, 8, 8), np.float32))
    assert load_images(tmp_path / "f.npz", RGB).preprocessed
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 3, 9, 9), np.float32))
    with pytest.raises(ConvdeployError, match="model takes"):
        load_images(tmp_path / "bad.npz", RGB)
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(3))
    with pytest.raises(ConvdeployError, match="labels"):
        load_images(tmp_path / "labels.npz", RGB)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(ConvdeployError, match="does not exist"):
        load_images(tmp_path / "nope", RGB)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvdeployError, match="no images"):
        load_images(tmp_path / "empty", RGB)


def test_subset_is_deterministic(tmp_path):
    data = load_images(_folder(tmp_path / "d", n_per_class=10), RGB, progress=False)
    a, b = data.subset(7, seed=1), data.subset(7, seed=1)
    assert len(a) == 7 and np.array_equal(a.images, b.images)


def test_truncated_jpeg_is_named_or_skipped_and_counted(tmp_path):
    root = _folder(tmp_path / "d")
    buf = tmp_path / "full.jpg"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(buf, quality=95)
    (root / "ant" / "trunc.jpg").write_bytes(buf.read_bytes()[:300])  # header intact, data cut
    with pytest.raises(ConvdeployError, match="trunc.jpg") as err:
        load_images(root, RGB, progress=False)
    assert "--skip-bad-files" in err.value.fix
    data = load_images(root, RGB, progress=False, skip_bad_files=True)
    assert len(data) == 6 and data.details["skipped_files"] == 1
    assert data.details["skipped_examples"][0].endswith("trunc.jpg")
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]  # labels stay aligned with images


def test_native_layout_reads_the_channel_count_of_float_npz(tmp_path):
    from convdeploy.models.datasets import native_layout

    np.savez(tmp_path / "sig.npz", x=np.zeros((4, 1, 64, 1), np.float32), y=np.zeros(4))
    assert native_layout(tmp_path / "sig.npz") == ((64, 1), 1, None)
    np.savez(tmp_path / "u8.npz", x=np.zeros((4, 8, 6, 3), np.uint8))
    assert native_layout(tmp_path / "u8.npz") == ((8, 6), 3, None)
    np.savez(tmp_path / "clips.npz", x=np.zeros((4, 5, 8, 6, 3), np.uint8))  # (N, T, H, W, C)
    assert native_layout(tmp_path / "clips.npz") == ((8, 6), 3, 5)
    np.savez(tmp_path / "fclips.npz", x=np.zeros((4, 1, 5, 8, 6), np.float32))  # (N, C, T, H, W)
    assert native_layout(tmp_path / "fclips.npz") == ((8, 6), 1, 5)


@pytest.mark.parametrize("pre", [
    Preprocess(size=(24, 20), mean=(0.5,), std=(0.25,), resize=28),
    Preprocess(frames=8, frame_stride=2, loop_short_clips=True),
    Preprocess(frames=4)])
def test_a_recorded_preprocessing_rebuilds_itself(pre):
    """An audit cell's record of the preprocessing rebuilds it whole (frames included: without
    them a video model's evaluation clips were read as images)."""
    assert Preprocess.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
