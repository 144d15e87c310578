"""Image datasets: ImageFolder directories and .npz arrays, decoded once per run.

Images are decoded in parallel, resized to the model's input size at load time and kept as uint8
(N, H, W, C); normalisation happens per batch. A process-wide cache keyed by path, modification
time and preprocessing means a 10,000-image evaluation set is read once per run, however many
targets evaluate it.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from convdeploy.errors import ConvdeployError

from .spec import Preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
_CACHE: dict[tuple, "ImageSet"] = {}


@dataclass
class ImageSet:
    """Images (uint8 NHWC at model size, or already-preprocessed float NCHW) and optional labels."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str
    classes: list[str] | None = None
    preprocessed: bool = False
    details: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, n: int | None, *, seed: int = 0) -> "ImageSet":
        """A deterministic random subset of ``n`` samples (all of them if n is None or larger)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        labels = None if self.labels is None else self.labels[idx]
        return replace(self, images=self.images[idx], labels=labels,
                       details={**self.details, "subset_of": len(self), "subset_seed": seed})

    def normalized(self, preprocess: Preprocess, start: int = 0,
                   stop: int | None = None) -> np.ndarray:
        """Float32 channels-first model input for samples [start, stop): NCHW for images,
        (N, C, T, H, W) for clips."""
        x = self.images[start:stop]
        if self.preprocessed:
            return np.ascontiguousarray(x, dtype=np.float32)
        mean = np.asarray(preprocess.mean, dtype=np.float32)
        std = np.asarray(preprocess.std, dtype=np.float32)
        x = (x.astype(np.float32) / 255.0 - mean) / std
        return np.ascontiguousarray(x.transpose(0, x.ndim - 1, *range(1, x.ndim - 1)))

    def batches(self, preprocess: Preprocess, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.normalized(preprocess, start, start + batch_size)

    def describe(self) -> dict:
        return {"source": self.source, "samples": len(self), "labels": self.labels is not None,
                "classes": self.classes, "preprocessed_input": self.preprocessed, **self.details}


def _fit(img, preprocess: Preprocess):
    """Resize (shorter side) and center-crop a PIL image to the model size."""
    from PIL import Image

    img = img.convert("RGB" if preprocess.channels == 3 else "L")
    h, w = preprocess.size
    if img.size == (w, h):
        return img
    short = preprocess.resize or max(h, w)
    scale = short / min(img.size)
    new = (max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale)))
    img = img.resize(new, Image.BILINEAR)
    left, top = (new[0] - w) // 2, (new[1] - h) // 2
    return img.crop((left, top, left + w, top + h))


def _decode(path: Path, preprocess: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(_fit(img, preprocess), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ConvdeployError(f"cannot read image {path}: {exc}",
                              fix="remove or replace the file, or pass --skip-bad-files to leave "
                                  "unreadable images out (the report counts them)") from exc
    return arr if arr.ndim == 3 else arr[:, :, None]


def _try_decode(path: Path, preprocess: Preprocess, skip_bad: bool) -> np.ndarray | None:
    try:
        return _decode(path, preprocess)
    except ConvdeployError:
        if skip_bad:
            return None
        raise


def _image_folder(root: Path, preprocess: Preprocess, progress: bool,
                  skip_bad: bool = False) -> ImageSet:
    from tqdm.auto import tqdm

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes:
        files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES]
    else:  # a flat folder of images: unlabeled
        files = [(f, -1) for f in sorted(root.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        from .clips import CLIP_SUFFIXES

        videos = any(f.suffix.lower() in CLIP_SUFFIXES for f in root.rglob("*"))
        raise ConvdeployError(
            f"no images found in {root}" + (" (it holds video clips: this is an image model)"
                                             if videos else ""),
            fix="give an ImageFolder directory (<class>/<image>.jpg) or a .npz"
                + ("; a video model of your own takes clips with --frames T" if videos else ""))
    workers = min(32, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        images = list(tqdm(pool.map(lambda item: _try_decode(item[0], preprocess, skip_bad),
                                     files),
                           total=len(files), desc=f"load {root.name}", unit="img",
                           disable=not progress, leave=False))
    bad = [str(f) for (f, _), img in zip(files, images) if img is None]
    kept = [(item, img) for item, img in zip(files, images) if img is not None]
    if not kept:
        raise ConvdeployError(f"no readable images in {root} ({len(bad)} skipped)",
                              fix="check the files: every one failed to decode")
    labels = np.asarray([i for (_, i), _ in kept], dtype=np.int64) if classes else None
    details = {"skipped_files": len(bad), "skipped_examples": bad[:5]} if skip_bad else {}
    return ImageSet(np.stack([img for _, img in kept]), labels, str(root), classes or None,
                    details=details)


def _npz(path: Path, preprocess: Preprocess) -> ImageSet:
    from PIL import Image

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConvdeployError(f"cannot read {path}: {exc}",
                              fix="save it with numpy.savez(path, x=images, y=labels)") from exc
    if "x" not in data:
        raise ConvdeployError(f"{path} has no array 'x' (found: {', '.join(data.files)})",
                              fix="save images as x: (N,H,W,C) uint8 or (N,C,H,W) float32")
    x = data["x"]
    y = data["y"].astype(np.int64) if "y" in data else None
    if y is not None and len(y) != len(x):
        raise ConvdeployError(f"{path}: {len(x)} images but {len(y)} labels",
                              fix="give one label per image in 'y'")
    if x.ndim == 5:
        raise ConvdeployError(f"{path} holds video clips (5-D x of shape {x.shape}), this is "
                              "an image model", fix="give images: x of shape (N, H, W, C)")
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] in (1, 3):
        if x.shape[-1] != preprocess.channels:
            raise ConvdeployError(
                f"{path} has {x.shape[-1]}-channel images but the model takes "
                f"{preprocess.channels}", fix="give --mean/--std one value per model channel")
        if x.shape[1:3] != preprocess.size:
            mode = "RGB" if x.shape[-1] == 3 else "L"
            x = np.stack([np.asarray(_fit(Image.fromarray(im.squeeze(), mode), preprocess))
                          .reshape(*preprocess.size, -1) for im in x])
        return ImageSet(x, y, str(path))
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 4:
        if tuple(x.shape[1:]) != preprocess.input_shape:
            raise ConvdeployError(
                f"{path}: float images of shape {tuple(x.shape[1:])} but the model takes "
                f"{preprocess.input_shape}", fix="store (N,C,H,W) float32 at the model's size")
        return ImageSet(x.astype(np.float32), y, str(path), preprocessed=True)
    raise ConvdeployError(f"{path}: 'x' has shape {x.shape} and dtype {x.dtype}",
                          fix="use (N,H,W,C) uint8 or (N,C,H,W) float32 (already normalised)")


def load_images(path: str | Path, preprocess: Preprocess, *, progress: bool = True,
                skip_bad_files: bool = False) -> ImageSet:
    """Load an ImageFolder directory or .npz file, cached for the life of the process.

    An image that cannot be decoded (truncated, not an image) stops the load with its name,
    unless ``skip_bad_files``: then it is left out and ``details["skipped_files"]`` counts it."""
    path = Path(path).expanduser()
    kind = "clips" if preprocess.video else "images"
    if not path.exists():
        raise ConvdeployError(f"data path {path} does not exist",
                              fix=f"give an existing folder of {kind} or an .npz file")
    key = (str(path.resolve()), path.stat().st_mtime_ns, preprocess, skip_bad_files)
    if key not in _CACHE:
        _CACHE[key] = _load(path, preprocess, progress, skip_bad_files)
    return _CACHE[key]


def _load(path: Path, preprocess: Preprocess, progress: bool, skip_bad: bool) -> ImageSet:
    if preprocess.video:  # video models: clips (models/clips.py), same cache and errors
        from . import clips

        if path.is_dir():
            return clips.folder(path, preprocess, progress, skip_bad)
        if path.suffix == ".npz":
            return clips.npz(path, preprocess)
        if path.suffix.lower() in clips.CLIP_SUFFIXES:
            return clips.single_clip(path, preprocess)
        raise ConvdeployError(f"{path} is neither a folder of clips, a clip nor an .npz",
                              fix="give a folder of <class>/<clip>.mp4 or an .npz")
    if path.is_dir():
        return _image_folder(path, preprocess, progress, skip_bad)
    if path.suffix == ".npz":
        return _npz(path, preprocess)
    raise ConvdeployError(f"{path} is neither a directory nor a .npz file",
                          fix="give an ImageFolder directory or a .npz file")


class Layout(NamedTuple):
    size: tuple[int, int]
    channels: int
    frames: int | None = None  # clips: the frames a 5-D .npz holds (None: images, or unknown)


def native_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of the first image of a folder or .npz: the default input size of a model
    that states none."""
    layout = native_layout(path)
    return layout[0] if layout else None


def native_layout(path: str | Path) -> Layout | None:
    """The size and channels of the first sample of a folder or .npz, as stored (images and
    clips count as RGB: they are decoded to the model's channels), and a 5-D .npz's frames per
    clip; None when it cannot be told."""
    from PIL import Image

    from .clips import CLIP_SUFFIXES, video_frames

    path = Path(path).expanduser()
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            try:
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    with Image.open(f) as img:
                        return Layout((img.size[1], img.size[0]), 3)
                if f.suffix.lower() in CLIP_SUFFIXES:
                    first = next(video_frames(f)[1])
                    return Layout((first.size[1], first.size[0]), 3)
            except (OSError, ValueError, StopIteration, ConvdeployError, ImportError):
                continue  # a bad file is reported (or skipped) when the set is loaded
        return None
    if path.suffix == ".npz" and path.is_file():
        try:
            x = np.load(path, allow_pickle=False)["x"] if path.stat().st_size else None
        except (OSError, ValueError, KeyError):
            return None  # load_images names what is wrong with the file
        if x is not None and x.ndim == 4:
            if x.dtype == np.uint8:
                return Layout(tuple(x.shape[1:3]), int(x.shape[3]))
            return Layout(tuple(x.shape[2:4]), int(x.shape[1]))
        if x is not None and x.ndim == 5:  # clips: (N, T, H, W, C) uint8 or (N, C, T, H, W)
            if x.dtype == np.uint8:
                return Layout(tuple(x.shape[2:4]), int(x.shape[4]), int(x.shape[1]))
            return Layout(tuple(x.shape[3:5]), int(x.shape[1]), int(x.shape[2]))
    return None
