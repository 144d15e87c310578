"""Encodings: the numerics contract.

For every quantized tensor of a graph: bits, signedness, scale(s), zero point(s) and axis, keyed by
a stable name. Every exporter writes exactly these numbers; no target re-calibrates on its own.
The arithmetic helpers here (``quantize``/``dequantize``) are the numpy statement of that contract:
``q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)``, as ONNX QuantizeLinear does.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from .scheme import TensorQuant

ENCODINGS_VERSION = 1


class TensorKind(str, Enum):
    WEIGHT = "weight"
    BIAS = "bias"
    ACTIVATION = "activation"


@dataclass(frozen=True)
class TensorEncoding:
    """How one tensor is quantized, with its numbers.

    ``axis`` is the channel axis for per-channel encodings (None = per tensor).
    ``tensors`` lists the graph values this encoding applies to (a passthrough op such as a
    slice or max-pool shares its input's encoding, so one entry can cover several values).
    ``constraint`` names the integer kernel that fixes an output encoding (int8 LOGISTIC's
    scale 1/256 and zero point -128, as TFLite defines it): calibration leaves it alone, and
    every exporter writes it unchanged.
    """

    kind: TensorKind
    bits: int
    signed: bool
    qmin: int
    qmax: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
    module: str = ""
    tensors: tuple[str, ...] = ()
    constraint: str = ""  # why the numbers are fixed, when a kernel fixes them (not calibrated)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TensorKind(self.kind))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "zero_point", tuple(int(z) for z in self.zero_point))
        object.__setattr__(self, "tensors", tuple(self.tensors))
        if len(self.scale) != len(self.zero_point):
            raise ValueError("scale and zero_point must have the same length")
        if any(not (math.isfinite(s) and s > 0) for s in self.scale):
            raise ValueError(f"scales must be finite and positive: {self.scale[:4]}...")

    @classmethod
    def from_arrays(cls, kind: TensorKind, tq: TensorQuant, scale, zero_point, *,
                    axis: int | None = None, module: str = "",
                    tensors: tuple[str, ...] = ()) -> "TensorEncoding":
        scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
        zero_point = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
        return cls(kind=kind, bits=tq.bits, signed=tq.signed, qmin=tq.qmin, qmax=tq.qmax,
                   scale=tuple(scale.tolist()), zero_point=tuple(zero_point.tolist()),
                   axis=axis, module=module, tensors=tensors)

    @property
    def dtype_name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"

    def numpy_dtype(self) -> np.dtype:
        """Smallest numpy container for the codes (4-bit codes live in 8-bit containers)."""
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        if self.bits <= 16:
            return np.dtype(np.int16 if self.signed else np.uint16)
        return np.dtype(np.int32 if self.signed else np.uint32)

    def _broadcast(self, values: tuple, ndim: int, dtype=np.float32) -> np.ndarray:
        arr = np.asarray(values, dtype=dtype)
        if self.axis is None or arr.size == 1:
            return arr.reshape(()) if arr.size == 1 else arr
        shape = [1] * ndim
        shape[self.axis] = arr.size
        return arr.reshape(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float -> integer codes (round half to even, saturate), in ``numpy_dtype()``.

        ``x / scale`` is computed in float32, as ONNX QuantizeLinear and the torch simulation do,
        so all three agree to the bit.
        """
        x = np.asarray(x, dtype=np.float32)
        s = self._broadcast(self.scale, x.ndim)
        z = self._broadcast(self.zero_point, x.ndim, np.float64)
        q = np.clip(np.round(x / s).astype(np.float64) + z, self.qmin, self.qmax)
        return q.astype(self.numpy_dtype())

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Codes -> float: ``(q - zero_point) * scale`` in float32, as DequantizeLinear."""
        q = np.asarray(q, dtype=np.int64)
        z = self._broadcast(self.zero_point, q.ndim, np.int64)
        return (q - z).astype(np.float32) * self._broadcast(self.scale, q.ndim)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["scale"] = list(self.scale)
        d["zero_point"] = list(self.zero_point)
        d["tensors"] = list(self.tensors)
        d["dtype"] = self.dtype_name
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TensorEncoding":
        d = {k: v for k, v in d.items() if k != "dtype"}
        return cls(**d)


@dataclass
class Encodings:
    """All tensor encodings of one quantized graph, keyed by stable quantizer name."""

    tensors: dict[str, TensorEncoding] = field(default_factory=dict)
    scheme: dict = field(default_factory=dict)
    output: str | None = None  # key of the model output's encoding (defines an output LSB)

    def __getitem__(self, key: str) -> TensorEncoding:
        try:
            return self.tensors[key]
        except KeyError:
            raise KeyError(f"no encoding for tensor {key!r}; known: {sorted(self.tensors)[:8]}...")

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def to_dict(self) -> dict:
        return {
            "version": ENCODINGS_VERSION,
            "scheme": self.scheme,
            "output": self.output,
            "tensors": {k: v.to_dict() for k, v in self.tensors.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Encodings":
        if d.get("version") != ENCODINGS_VERSION:
            raise ValueError(f"encodings version {d.get('version')} is not {ENCODINGS_VERSION}")
        tensors = {k: TensorEncoding.from_dict(v) for k, v in d["tensors"].items()}
        return cls(tensors=tensors, scheme=d.get("scheme", {}), output=d.get("output"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | Path) -> Path:
        from convdeploy.files import write_text_atomic

        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Encodings":
        return cls.from_dict(json.loads(Path(path).read_text()))
