"""Integer requantization as integer targets do it: a 32-bit fixed-point multiplier and a shift.

``M = s_in * s_w / s_out`` (a real number) becomes ``(multiplier, shift)`` with
``M ~= multiplier * 2**(shift - 31)``; applying it to an int32 accumulator is a rounding doubling
high multiply followed by a rounding right shift (gemmlowp's ``SaturatingRoundingDoublingHighMul``
and ``RoundingDivideByPOT``, which TFLite's reference kernels use). Every function here works on
numpy int64 arrays and is exact: no float touches the data path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real`` (> 0) -> (int32 multiplier in [2**30, 2**31), shift), as TFLite's
    ``QuantizeMultiplier``: frexp, round half away from zero, renormalise on overflow."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = int(math.floor(abs(q) * 2**31 + 0.5)) * (1 if q >= 0 else -1)
    if fixed == 2**31:
        fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: the product is 0
        return 0, 0
    return fixed, shift


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """C++ integer division (towards zero) of int64 arrays by a positive int."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def rounding_doubling_high_mul(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """``(a * b * 2 + 2**31) >> 32`` with gemmlowp's nudge (round half away from zero) and its
    single saturating case (both operands INT32_MIN)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b  # |a|, |b| < 2**31: fits in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _trunc_div(ab + nudge, 1 << 31)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)


def rounding_divide_by_pot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """Arithmetic right shift rounding half away from zero (gemmlowp ``RoundingDivideByPOT``)."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


class Rounding(str, Enum):
    """How ``x * multiplier * 2**(shift-31)`` is rounded.

    SINGLE: one rounding, ``(x * m + 2**(30 - shift)) >> (31 - shift)`` in 64 bits
    (TFLite built with ``TFLITE_SINGLE_ROUNDING``; measured: LiteRT 2.3's reference kernels
    compute this). DOUBLE: gemmlowp's rounding doubling high multiply, then a rounding right
    shift (TFLite's default build, CMSIS-NN, most HLS code).
    """

    SINGLE = "single"
    DOUBLE = "double"


@dataclass(frozen=True)
class IntegerArithmetic:
    """The rounding each kernel family uses: the one thing integer runtimes disagree on.

    The default is what LiteRT 2.3's reference kernels compute (measured, bit for bit): double
    rounding in convolutions, ADD and MEAN, single rounding in per-channel FULLY_CONNECTED.
    """

    conv: Rounding = Rounding.DOUBLE
    fully_connected: Rounding = Rounding.SINGLE
    add: Rounding = Rounding.DOUBLE
    mean: Rounding = Rounding.DOUBLE


TFLITE_REFERENCE = IntegerArithmetic()


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: int | np.ndarray,
                                     shift: int | np.ndarray,
                                     rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """``round(x * M)`` for int32 ``x`` (TFLite ``MultiplyByQuantizedMultiplier``)."""
    shift = np.asarray(shift, dtype=np.int64)
    if rounding is Rounding.SINGLE:
        total = 31 - shift
        m = np.asarray(multiplier, dtype=np.int64)
        # |x| < 2**31 and m < 2**31: the product needs 62 bits, so int64 holds it.
        return (wrap_int32(x) * m + (np.int64(1) << (total - 1))) >> total
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(x, dtype=np.int64) * (np.int64(1) << left)
    return rounding_divide_by_pot(rounding_doubling_high_mul(wrap_int32(x), multiplier), right)


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32, as C++ arithmetic on int32 values does."""
    return ((np.asarray(x, dtype=np.int64) + 2**31) % 2**32) - 2**31


def activation_range(activation: str, zero_point: int, scale: float, qmin: int,
                     qmax: int) -> tuple[int, int]:
    """The clamp a fused activation adds to an integer output (TFLite
    ``CalculateActivationRangeQuantized``): ReLU clamps at the zero point, ReLU6 also at the
    code of 6.0 (rounded half away from zero, in float32)."""
    if activation == "NONE":
        return qmin, qmax
    low = max(qmin, zero_point)
    if activation == "RELU":
        return low, qmax
    if activation == "RELU6":
        six = float(np.float32(6.0) / np.float32(scale))
        return low, min(qmax, zero_point + int(math.floor(abs(six) + 0.5)))
    raise ValueError(f"no integer form for activation {activation!r}")
