"""What the toolkit needs to know about a model: how to build it, where its weights come from,
and the preprocessing its inputs need."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """uint8 image -> float tensor: resize (shorter side) and center-crop to ``size``, scale to
    [0, 1], then ``(x - mean) / std`` per channel. The number of channels is ``len(mean)``
    (1 = grayscale, 3 = RGB)."""

    size: tuple[int, int] = (32, 32)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: int | None = None  # shorter side before the center crop; None = straight to size
    # video models: T frames taken every ``frame_stride`` decoded frames; input (C, T, H, W).
    # A clip with fewer frames is refused, or looped from its start with ``loop_short_clips``.
    frames: int | None = None
    frame_stride: int = 1
    loop_short_clips: bool = False

    def __post_init__(self) -> None:
        if self.frames is not None and (self.frames < 1 or self.frame_stride < 1):
            raise ValueError("frames and frame_stride must be at least 1")
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need one value per channel (1 or 3 channels)")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        if min(self.size) < 1:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def video(self) -> bool:
        return self.frames is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (C, T, H, W) for video clips: one model-input contract."""
        if self.frames is not None:
            return (self.channels, self.frames, *self.size)
        return (self.channels, *self.size)

    def to_dict(self) -> dict:
        out = {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
               "resize": self.resize, "channels": self.channels,
               "color": "RGB" if self.channels == 3 else "L"}
        if self.frames is not None:
            out.update(frames=self.frames, frame_stride=self.frame_stride,
                       short_clips="looped" if self.loop_short_clips else "refused")
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        """The inverse of ``to_dict`` (a report's or an audit cell's record)."""
        return cls(size=tuple(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   resize=d.get("resize"), frames=d.get("frames"),
                   frame_stride=d.get("frame_stride", 1),
                   loop_short_clips=d.get("short_clips") == "looped")


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo.

    ``weights`` is a packaged file (the demo model) or None when the user must pass --weights
    (published checkpoints are never downloaded: the machine has no model hub).
    ``default_data`` builds (calibration, evaluation) datasets for models that ship their own.
    """

    name: str
    build: Callable[[], object]
    preprocess: Preprocess
    num_classes: int
    description: str
    weights: Path | None = None
    weights_hint: str = ""
    default_data: Callable[[], tuple[object, object]] | None = field(default=None, repr=False)
