"""Video clip datasets: folders of clips (``<class>/<clip>.mp4|avi|mkv|webm|gif``) decoded with
PyAV, and ``.npz`` arrays. One model-input contract: video models take (N, C, T, H, W).

A clip is T frames taken every ``frame_stride`` decoded frames from its start, each resized and
center-cropped like an image (``datasets._fit``), kept as uint8 (N, T, H, W, C); normalisation
happens per batch. A clip shorter than ``(T - 1) * stride + 1`` frames is refused by name, or,
with ``loop_short_clips``, played again from its start (counted in the set's details, so the
report says how many were looped). Decoding runs in threads (FFmpeg releases the GIL) and the
set is cached per process like images.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convdeploy.errors import ConvdeployError

from .datasets import IMAGE_SUFFIXES, ImageSet, _fit
from .spec import Preprocess

CLIP_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif"}


@dataclass
class ClipSet(ImageSet):
    """Clips as uint8 (N, T, H, W, C) at model size, or preprocessed float (N, C, T, H, W);
    ``normalized`` gives (N, C, T, H, W) (channels move first whatever the rank)."""


class ShortClipError(ConvdeployError):
    """A readable clip with fewer frames than the model takes: a data/model mismatch, never
    skipped as a bad file."""


def _bad(path: Path, what: str) -> ConvdeployError:
    return ConvdeployError(f"cannot read video {path}: {what}",
                           fix="remove or replace the file, or pass --skip-bad-files to leave "
                               "unreadable clips out (the report counts them)")


def video_frames(path: Path):
    """(frames per second, an iterator of PIL images) of ``path``'s first video stream, every
    decoding error raised as one message naming the file (the stream's iterator included)."""
    import av

    def frames(container, stream):
        try:
            with container:
                for frame in container.decode(stream):
                    yield frame.to_image()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise _bad(path, str(exc).strip() or type(exc).__name__) from exc

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _bad(path, str(exc).strip() or type(exc).__name__) from exc
    stream = next((s for s in container.streams if s.type == "video"), None)
    if stream is None:
        container.close()
        raise _bad(path, "it has no video stream")
    return float(stream.average_rate or 25), frames(container, stream)


def decode_clip(path: Path, preprocess: Preprocess) -> tuple[np.ndarray, bool]:
    """(T, H, W, C) uint8 frames of ``path`` and whether it had to be looped."""
    t, stride = preprocess.frames, preprocess.frame_stride
    frames = []
    _, images = video_frames(path)
    for i, image in enumerate(images):
        if i % stride == 0:
            frames.append(np.asarray(_fit(image, preprocess), np.uint8))
            if len(frames) == t:
                images.close()
                break
    if not frames:
        raise _bad(path, "no frame could be decoded (empty or zero-length video)")
    looped = len(frames) < t
    if looped and not preprocess.loop_short_clips:
        raise ShortClipError(
            f"video {path} has {len(frames)} frames at stride {stride}, the model takes {t}",
            fix="give longer clips, a smaller --frame-stride, or --loop-short-clips to play "
                "short clips again from their start")
    clip = np.stack([frames[i % len(frames)] for i in range(t)])
    return (clip if clip.ndim == 4 else clip[..., None]), looped


def folder(root: Path, preprocess: Preprocess, progress: bool, skip_bad: bool) -> ClipSet:
    from tqdm.auto import tqdm

    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    dirs = [(root / c, i) for i, c in enumerate(classes)] or [(root, -1)]
    files = [(f, i) for d, i in dirs for f in sorted(d.iterdir())
             if f.suffix.lower() in CLIP_SUFFIXES]
    if not files:
        images = any(f.suffix.lower() in IMAGE_SUFFIXES for d, _ in dirs for f in d.iterdir())
        raise ConvdeployError(
            f"no video clips found in {root}" + (" (it holds images)" if images else ""),
            fix="this is a video model: give a folder of <class>/<clip>.mp4 (or .avi, .mkv, "
                ".webm, .gif) or an .npz with x of shape (N, T, H, W, C)")

    def load(item):
        try:
            return decode_clip(item[0], preprocess)
        except ConvdeployError as exc:
            if skip_bad and not isinstance(exc, ShortClipError):
                return None
            raise

    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        clips = list(tqdm(pool.map(load, files), total=len(files), desc=f"decode {root.name}",
                          unit="clip", disable=not progress, leave=False))
    bad = [str(f) for (f, _), c in zip(files, clips) if c is None]
    kept = [(item, c) for item, c in zip(files, clips) if c is not None]
    if not kept:
        raise ConvdeployError(f"no readable clips in {root} ({len(bad)} skipped)",
                              fix="check the files: every one failed to decode")
    details = {"looped_short_clips": sum(looped for _, (_, looped) in kept)}
    if skip_bad:
        details.update(skipped_files=len(bad), skipped_examples=bad[:5])
    labels = np.asarray([i for (_, i), _ in kept], dtype=np.int64) if classes else None
    return ClipSet(np.stack([c for _, (c, _) in kept]), labels, str(root), classes or None,
                   details=details)


def npz(path: Path, preprocess: Preprocess) -> ClipSet:
    try:
        data = np.load(path, allow_pickle=False)
        x = data["x"]
        y = data["y"].astype(np.int64) if "y" in data else None
    except (OSError, ValueError, KeyError) as exc:
        raise ConvdeployError(f"cannot read clips from {path}: {exc}",
                              fix="save x: (N, T, H, W, C) uint8 or (N, C, T, H, W) float32, "
                                  "and optional labels y") from exc
    if y is not None and len(y) != len(x):
        raise ConvdeployError(f"{path}: {len(x)} clips but {len(y)} labels",
                              fix="give one label per clip in 'y'")
    t, c = preprocess.frames, preprocess.channels
    if x.ndim == 4:
        raise ConvdeployError(f"{path} holds images (4-D x of shape {x.shape}), the model "
                              "takes clips", fix="give clips: x of shape (N, T, H, W, C)")
    if x.dtype == np.uint8 and x.ndim == 5:
        if x.shape[-1] != c:
            raise ConvdeployError(f"{path} has {x.shape[-1]}-channel frames but the model "
                                  f"takes {c}", fix="give frames with the model's channels")
        if x.shape[1] < t:
            raise ConvdeployError(f"{path}: clips of {x.shape[1]} frames, the model takes {t}",
                                  fix=f"store at least {t} frames per clip")
        x = x[:, :t]
        if x.shape[2:4] != preprocess.size:
            from PIL import Image

            mode = "RGB" if c == 3 else "L"
            x = np.stack([[np.asarray(_fit(Image.fromarray(f.squeeze(), mode), preprocess))
                           .reshape(*preprocess.size, c) for f in clip] for clip in x])
        return ClipSet(x, y, str(path))
    if np.issubdtype(x.dtype, np.floating) and x.ndim == 5:
        if tuple(x.shape[1:]) != preprocess.input_shape:
            raise ConvdeployError(f"{path}: float clips of shape {tuple(x.shape[1:])} but the "
                                  f"model takes {preprocess.input_shape}",
                                  fix="store (N, C, T, H, W) float32 at the model's size")
        return ClipSet(x.astype(np.float32), y, str(path), preprocessed=True)
    raise ConvdeployError(f"{path}: 'x' has shape {x.shape} and dtype {x.dtype}",
                          fix="use (N, T, H, W, C) uint8 or (N, C, T, H, W) float32")


def single_clip(path: Path, preprocess: Preprocess) -> ClipSet:
    clip, looped = decode_clip(path, preprocess)
    return ClipSet(clip[None], None, str(path), details={"looped_short_clips": int(looped)})


def load_clips(path: str | Path, preprocess: Preprocess, *, progress: bool = True,
               skip_bad_files: bool = False) -> ClipSet:
    """A folder of clips, one clip, or an .npz, for a model whose preprocessing has ``frames``
    (``datasets.load_images`` with its cache; one entry point for both kinds of data)."""
    from .datasets import load_images

    if not preprocess.video:
        raise ValueError("load_clips needs a video preprocessing (frames set)")
    return load_images(path, preprocess, progress=progress, skip_bad_files=skip_bad_files)


def write_clip(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 mp4 (or GIF by suffix), atomically."""
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.name}.part{path.suffix}")
    h, w = frames.shape[1:3]
    with av.open(str(tmp), "w") as out:
        gif = path.suffix.lower() == ".gif"
        stream = out.add_stream("gif" if gif else "libx264", rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "rgb8" if gif else "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(
                frame[:stream.height, :stream.width]), format="rgb24")
            for packet in stream.encode(image):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
    return path
