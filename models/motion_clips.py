"""A labelled temporal benchmark built from real pixels: camera-motion clips.

No labelled action dataset is reachable here, so the video models are trained and measured on
clips made from real photographs moved by known camera motions: a window over a source image
follows a trajectory (pan in 8 directions at 2 speeds, zoom in/out, rotate cw/ccw, static) or an
order-sensitive composite (pan then stop vs stop then pan, accelerate vs decelerate). Each frame
is re-encoded as JPEG at a random quality and gets sensor-like noise. The start position, zoom
and angle are random, so no single frame tells the class: the single-frame baseline (the same
network fed one frame repeated) must sit near chance, and the report says how near.

It is a synthetic task on real pixels, not an action-recognition dataset; numbers on it say
whether a deployed model keeps its temporal reasoning, not how it would do on Kinetics.

    python -m convdeploy.models.motion_clips --source ../shared/data/cifar10/train-subset \\
        --clips 6000 --out train.npz         # (N, T, H, W, 3) uint8 and labels
"""
from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .clips import ClipSet

DIRECTIONS = {"e": (1, 0), "ne": (1, -1), "n": (0, -1), "nw": (-1, -1), "w": (-1, 0),
              "sw": (-1, 1), "s": (0, 1), "se": (1, 1)}
SPEEDS = {"slow": 1.0, "fast": 2.5}  # output pixels per frame
CLASSES = (*(f"pan-{d}-{s}" for s in SPEEDS for d in DIRECTIONS), "zoom-in", "zoom-out",
           "rotate-cw", "rotate-ccw", "static", "pan-then-stop", "stop-then-pan",
           "accelerate", "decelerate")


@dataclass(frozen=True)
class MotionConfig:
    frames: int = 8
    size: int = 32
    zoom_rate: float = 1.07  # scale change per frame
    rotate_deg: float = 6.0  # per frame
    jpeg_quality: tuple[int, int] = (50, 90)
    noise_std: float = 3.0  # in 8-bit levels


def _velocities(name: str, cfg: MotionConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-frame window displacement (dx, dy) in output pixels, frames - 1 steps."""
    steps = cfg.frames - 1
    if name.startswith("pan-") and name.split("-")[1] in DIRECTIONS:
        _, direction, speed = name.split("-")
        d = np.asarray(DIRECTIONS[direction], dtype=np.float64)
        return np.tile(d / np.linalg.norm(d) * SPEEDS[speed], (steps, 1))
    angle = rng.uniform(0, 2 * math.pi)  # composites move in a random direction
    unit = np.asarray([math.cos(angle), math.sin(angle)])
    half = steps // 2
    ramp = np.linspace(0.0, 2 * SPEEDS["fast"], steps)
    speed = {"pan-then-stop": [SPEEDS["fast"]] * half + [0.0] * (steps - half),
             "stop-then-pan": [0.0] * (steps - half) + [SPEEDS["fast"]] * half,
             "accelerate": ramp, "decelerate": ramp[::-1]}.get(name, np.zeros(steps))
    return np.asarray(speed)[:, None] * unit[None, :]


def trajectory(name: str, cfg: MotionConfig, rng: np.random.Generator) -> np.ndarray:
    """(frames, 4): window centre offset x, y (output pixels), zoom, angle (radians)."""
    t = np.arange(cfg.frames)
    offsets = np.vstack([[0.0, 0.0], np.cumsum(_velocities(name, cfg, rng), axis=0)])
    zoom = {"zoom-in": cfg.zoom_rate ** t, "zoom-out": cfg.zoom_rate ** -t}.get(
        name, np.ones(cfg.frames))
    turn = math.radians(cfg.rotate_deg)
    angle = {"rotate-cw": turn * t, "rotate-ccw": -turn * t}.get(name, np.zeros(cfg.frames))
    return np.column_stack([offsets, zoom, angle])


def render(source, path: np.ndarray, cfg: MotionConfig, rng: np.random.Generator) -> np.ndarray:
    """The clip (frames, size, size, 3) uint8 of a PIL ``source`` along ``path``."""
    from PIL import Image

    w, h = source.size
    s = cfg.size
    base = rng.uniform(1.0, 1.6) * min(w, h) / (4.0 * s)  # source pixels per output pixel
    start_angle = rng.uniform(-math.pi, math.pi) if path[:, 3].any() else rng.uniform(-0.2, 0.2)
    span = path[:, :2] * base  # centre offsets in source pixels
    reach = s * base / min(path[:, 2].min(), 1.0) * 0.75  # half-diagonal of the widest window
    lo = np.maximum(reach - span.min(axis=0), reach)
    hi = np.minimum(np.asarray([w, h]) - reach - span.max(axis=0), np.asarray([w, h]) - reach)
    centre = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
    frames = []
    for (dx, dy, zoom, angle) in path:
        scale = base / zoom
        a = angle + start_angle
        cos, sin = math.cos(a) * scale, math.sin(a) * scale
        cx, cy = centre + np.asarray([dx, dy]) * base
        # output (x, y) -> source: rotate and scale about the window centre
        coeffs = (cos, -sin, cx - cos * s / 2 + sin * s / 2,
                  sin, cos, cy - sin * s / 2 - cos * s / 2)
        frame = source.transform((s, s), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        buf = io.BytesIO()
        frame.save(buf, "JPEG", quality=int(rng.integers(*cfg.jpeg_quality)))
        arr = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
        arr += rng.normal(0.0, cfg.noise_std, arr.shape)
        frames.append(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    return np.stack(frames)


def generate(sources: np.ndarray, n: int, *, cfg: MotionConfig = MotionConfig(), seed: int = 0,
             classes: tuple[str, ...] = CLASSES, upscale: int = 1) -> ClipSet:
    """``n`` clips, classes balanced, each from a random one of ``sources`` ((N, H, W, 3)
    uint8 photographs; ``upscale`` enlarges small ones such as CIFAR's 32x32 first)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(classes)
    rng.shuffle(labels)
    clips = np.empty((n, cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        src = Image.fromarray(sources[rng.integers(len(sources))])
        if upscale > 1:
            src = src.resize((src.width * upscale, src.height * upscale), Image.BICUBIC)
        clips[i] = render(src, trajectory(classes[label], cfg, rng), cfg, rng)
    return ClipSet(clips, labels.astype(np.int64), f"motion-clips(seed={seed})", list(classes),
                   details={"generator": "convdeploy.models.motion_clips",
                            "frames": cfg.frames, "size": cfg.size, "seed": seed})


def sample_photographs() -> np.ndarray:
    """scikit-learn's two real photographs (shipped with it: no download)."""
    from sklearn.datasets import load_sample_images

    return np.stack(load_sample_images().images)


def main(argv: list[str] | None = None) -> int:
    from .datasets import load_images
    from .spec import Preprocess

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", help="ImageFolder or .npz of photographs (default: "
                                     "scikit-learn's two sample photographs)")
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--frames", type=int, default=MotionConfig.frames)
    p.add_argument("--size", type=int, default=MotionConfig.size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.source:
        images = load_images(args.source, Preprocess(size=(32, 32)), progress=False).images
        upscale = 4
    else:
        images, upscale = sample_photographs(), 1
    cfg = MotionConfig(frames=args.frames, size=args.size)
    clips = generate(images, args.clips, cfg=cfg, seed=args.seed, upscale=upscale)
    np.savez_compressed(args.out, x=clips.images, y=clips.labels,
                        classes=np.asarray(clips.classes))
    print(f"wrote {args.out}: {len(clips)} clips of {cfg.frames} frames, {len(CLASSES)} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
