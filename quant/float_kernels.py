"""Float islands: ops an integer target has no integer kernel for run in float there, between
a DEQUANTIZE and a QUANTIZE that carry the Encodings' numbers (DESIGN.md, the integer op set).

Each island op is defined here once, as the sequence of float32 operations the TFLite writer
emits for it, in the order TFLite's reference kernels compute them: every step rounds to
float32 as the kernel does (elementwise IEEE operations, reductions summed in index order), so
the integer reference and LiteRT's reference kernels compute the island bit for bit alike.
"""
from __future__ import annotations

import numpy as np

ISLAND_OPS = ("LayerNormalization",)


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    """TFLite's float MEAN: the sum in index order in float32, divided by the count."""
    total = np.cumsum(x, axis=axis, dtype=np.float32).take([-1], axis=axis)
    return (total / np.float32(x.shape[axis])).astype(np.float32)


def layer_norm(x: np.ndarray, axis: int, epsilon: float, scale: np.ndarray | None,
               bias: np.ndarray | None) -> np.ndarray:
    """``(x - mean) * rsqrt(mean((x - mean)^2) + eps) * scale + bias`` over ``axis`` as
    MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL, MUL, ADD (``scale``/``bias`` along ``axis``)."""
    x = np.asarray(x, dtype=np.float32)
    centred = x - _mean(x, axis)
    variance = _mean(centred * centred, axis)
    inv = np.float32(1.0) / np.sqrt(variance + np.float32(epsilon))
    y = centred * inv
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    if scale is not None:
        y = y * np.asarray(scale, dtype=np.float32).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32).reshape(shape)
    return y.astype(np.float32)


def run(op_type: str, inputs: list[np.ndarray], attrs: dict) -> np.ndarray:
    """One island op on float32 inputs (``attrs`` as the lowering records them)."""
    if op_type == "LayerNormalization":
        return layer_norm(inputs[0], attrs["axis"], attrs["epsilon"], attrs.get("scale"),
                          attrs.get("bias"))
    raise KeyError(f"no float island for {op_type}")
