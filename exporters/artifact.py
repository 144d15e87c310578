"""What an exporter produces and a target consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol


class ArtifactFormat(str, Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    TORCH = "torch"  # an in-memory torch graph (the reference target's input)


@dataclass(frozen=True)
class Artifact:
    """One deployable model file (or in-memory torch graph) and what is known about it.

    ``precision`` is "float" or the scheme label (e.g. "w8a8"); ``encodings`` points at the
    Encodings JSON that the quantized numbers come from.
    """

    name: str
    format: ArtifactFormat
    precision: str
    path: Path | None = None
    encodings: Path | None = None
    input_name: str = "input"
    output_name: str = "output"
    input_shape: tuple[int, ...] = ()  # one sample, without the batch dimension
    output_scale: float | None = None  # output LSB (quantized artifacts)
    details: dict[str, Any] = field(default_factory=dict)
    scheme: Any = field(default=None, compare=False, repr=False)  # QuantScheme (quantized)
    module: Any = field(default=None, compare=False, repr=False)  # torch graph, TORCH format

    @property
    def quantized(self) -> bool:
        return self.precision != "float"

    @property
    def size_bytes(self) -> int | None:
        return self.path.stat().st_size if self.path and self.path.exists() else None


class Exporter(Protocol):
    """Writes one artifact for a (quantized) model into a directory."""

    format: ArtifactFormat

    def export(self, model: Any, directory: Path) -> Artifact: ...
