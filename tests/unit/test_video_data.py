"""Video data: clips decoded with PyAV (folders and single files), .npz clips, the errors a
user meets (corrupt, empty, short clips, images given to a video model and the reverse), the
camera-motion generator, and the zoo's video nets' input contract (N, C, T, H, W)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from convdeploy.errors import ConvdeployError
from convdeploy.models.spec import Preprocess

av = pytest.importorskip("av", reason="PyAV is not installed (pip install 'convdeploy[video]')")

VIDEO = Preprocess(size=(16, 16), frames=4, frame_stride=2)


def _clips(root, frames: int = 10):
    from convdeploy.models.clips import write_clip

    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        (root / label).mkdir(parents=True)
        for k in range(2):
            write_clip(root / label / f"c{k}.mp4",
                       rng.integers(0, 255, (frames, 24, 32, 3), dtype=np.uint8))
    return root


def test_a_folder_of_clips_loads_as_n_c_t_h_w(tmp_path):
    from convdeploy.models.clips import load_clips

    clips = load_clips(_clips(tmp_path), VIDEO, progress=False)
    assert clips.images.shape == (4, 4, 16, 16, 3) and clips.classes == ["left", "right"]
    assert list(clips.labels) == [0, 0, 1, 1]
    x = clips.normalized(VIDEO, 0, 3)
    assert x.shape == (3, 3, 4, 16, 16) and x.dtype == np.float32
    assert len(clips.subset(2)) == 2 and type(clips.subset(2)) is type(clips)


def test_the_frames_are_the_decoded_ones_at_the_stride(tmp_path):
    from convdeploy.models.clips import decode_clip, write_clip

    frames = np.zeros((9, 16, 16, 3), dtype=np.uint8)
    for t in range(9):
        frames[t] = 25 * t  # a flat grey level per frame survives H.264 within a few levels
    write_clip(tmp_path / "ramp.mp4", frames)
    clip, looped = decode_clip(tmp_path / "ramp.mp4", VIDEO)
    assert not looped
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [0, 50, 100, 150], atol=4)


def test_corrupt_empty_and_short_clips_are_named(tmp_path):
    from convdeploy.models.clips import load_clips

    root = _clips(tmp_path / "d", frames=10)
    (root / "left" / "empty.mp4").write_bytes(b"")
    (root / "right" / "junk.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(ConvdeployError, match="cannot read video .*empty.mp4|junk.mp4"):
        load_clips(root, VIDEO, progress=False)
    kept = load_clips(root, VIDEO, progress=False, skip_bad_files=True)
    assert len(kept) == 4 and kept.details["skipped_files"] == 2
    long = Preprocess(size=(16, 16), frames=8, frame_stride=2)
    with pytest.raises(ConvdeployError, match="has 5 frames at stride 2, the model takes 8"):
        load_clips(root / "left", long, progress=False, skip_bad_files=True)
    looped = load_clips(root / "right", Preprocess(size=(16, 16), frames=8, frame_stride=2,
                                                   loop_short_clips=True),
                        progress=False, skip_bad_files=True)
    assert looped.details["looped_short_clips"] == 2
    np.testing.assert_array_equal(looped.images[0, 5], looped.images[0, 0])


def test_npz_clips_and_the_wrong_kind_of_data(tmp_path):
    from convdeploy.models.datasets import load_images

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "clips.npz", x=rng.integers(0, 255, (3, 6, 16, 16, 3), dtype=np.uint8),
             y=[0, 1, 0])
    clips = load_images(tmp_path / "clips.npz", VIDEO, progress=False)
    assert clips.normalized(VIDEO).shape == (3, 3, 4, 16, 16)
    np.savez(tmp_path / "float.npz", x=rng.standard_normal((2, 3, 4, 16, 16)).astype(np.float32))
    assert load_images(tmp_path / "float.npz", VIDEO).preprocessed
    np.savez(tmp_path / "images.npz", x=rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(ConvdeployError, match="holds images"):
        load_images(tmp_path / "images.npz", VIDEO)
    with pytest.raises(ConvdeployError, match="holds video clips"):
        load_images(tmp_path / "clips.npz", Preprocess(size=(16, 16)))
    np.savez(tmp_path / "gray.npz", x=rng.integers(0, 255, (3, 6, 16, 16, 1), dtype=np.uint8))
    with pytest.raises(ConvdeployError, match="1-channel frames but the model takes 3"):
        load_images(tmp_path / "gray.npz", VIDEO)
    video_dir = _clips(tmp_path / "v")
    with pytest.raises(ConvdeployError, match="holds video clips: this is an image model"):
        load_images(video_dir, Preprocess(size=(16, 16)))
    from PIL import Image

    (tmp_path / "img" / "a").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "img" / "a" / "x.png")
    with pytest.raises(ConvdeployError, match="no video clips found .*holds images"):
        load_images(tmp_path / "img", VIDEO)


def test_motion_clips_are_seeded_balanced_and_move_as_labelled():
    from convdeploy.models.motion_clips import CLASSES, MotionConfig, generate, trajectory

    photos = np.random.default_rng(0).integers(0, 255, (2, 120, 160, 3), dtype=np.uint8)
    a = generate(photos, 50, seed=3)
    b = generate(photos, 50, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (50, 8, 32, 32, 3) and np.bincount(a.labels).max() == 2
    rng = np.random.default_rng(0)
    cfg = MotionConfig()
    east = trajectory("pan-e-fast", cfg, rng)
    assert east[-1, 0] == pytest.approx(2.5 * 7) and east[-1, 1] == 0
    assert trajectory("zoom-in", cfg, rng)[-1, 2] > 1 > trajectory("zoom-out", cfg, rng)[-1, 2]
    stop = trajectory("pan-then-stop", cfg, rng)
    go = trajectory("stop-then-pan", cfg, rng)
    assert np.allclose(stop[-1, :2], stop[4, :2]) and np.allclose(go[3, :2], 0)
    assert len(CLASSES) == 25


@pytest.mark.parametrize("name", ["SqueezeTime", "P3D"])
def test_video_nets_take_n_c_t_h_w(name):
    from convdeploy.models import video_nets

    torch.manual_seed(0)
    model = getattr(video_nets, name)(num_classes=5, widths=(8, 16)).eval()
    x = torch.randn(2, 3, 4 if name == "P3D" else 8, 32, 32)
    assert model(x).shape == (2, 5)
    if name == "SqueezeTime":  # time folded into channels as c * T + t
        folded = x.reshape(2, 24, 32, 32)
        assert torch.equal(folded[:, 1 * 8 + 3], x[:, 1, 3])


def test_the_single_frame_baseline_sees_one_frame_repeated():
    from convdeploy.models.video_motion import single_frame

    x = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)
    y = single_frame(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for n in range(2):
        frame = y[n, :, 0]
        assert all(torch.equal(y[n, :, t], frame) for t in range(4))
        assert any(torch.equal(frame, x[n, :, t]) for t in range(4))

