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

# The smallest requantization multiplier ``M = s_in * s_w[c] / s_out`` the contract lets a conv
# or linear layer have: a weight channel whose scale would give less is raised to this floor
# (``WeightQuantizer.floor_scale``). Measured with onnxruntime-qnn 2.7: the HTP saturates a
# MatMul output channel whose M is below ~2**-24 (151 LSB off; seen with ~128 inputs at zero
# point ~0, as ConvNeXt's and HorNet's layer-scaled pwconv2 after GELU, whose channels reach
# 2**-28). What the floor costs is below 0.5 * 2**-22 * K * 255 output LSB for a K-input layer
# (0.016 LSB at K = 512): a channel this small contributes nothing.
MIN_REQUANT_MULTIPLIER = 2.0**-22


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


def rounding_doubling_high_mul(a: np.ndarray, b: int | np.ndarray, bits: int = 32
                               ) -> np.ndarray:
    """``(a * b * 2 + 2**31) >> 32`` with gemmlowp's nudge (round half away from zero) and its
    single saturating case (both operands the type's minimum); ``bits=16`` is the int16
    version (``>> 15``, nudge ``2**14``) that HARD_SWISH uses.

    gemmlowp adds ``2**30`` (``1 - 2**30`` for a negative product) and divides by ``2**31``
    truncating towards zero; for a negative ``v`` that truncation is ``(v + 2**31 - 1) >> 31``,
    so both branches collapse to one floor shift of ``a * b + 2**30`` (tested against the
    branching form): two array passes instead of eight, the integer reference's hot loop.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    low = -(1 << (bits - 1))
    out = a * b  # |a|, |b| < 2**31: fits in int64
    out += 1 << (bits - 2)
    out >>= bits - 1
    if np.any(b == low):  # never for a multiplier in [2**30, 2**31); kept for the contract
        out = np.where((a == low) & (b == low), -low - 1, out)
    return out


def rounding_divide_by_pot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """Arithmetic right shift rounding half away from zero (gemmlowp ``RoundingDivideByPOT``):
    ``(x + 2**(e-1) - [x < 0]) >> e`` for ``e >= 1``, and ``x`` itself for ``e = 0``."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    positive = exponent >= 1
    if not np.any(positive):
        return x
    shift = np.maximum(exponent, 1)
    out = x + (np.int64(1) << (shift - 1))
    out += x >> 63  # -1 where x < 0: a tie then rounds away from zero, downwards
    out >>= shift
    return out if np.all(positive) else np.where(positive, out, x)


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
    mul: Rounding = Rounding.DOUBLE
    requantize: Rounding = Rounding.DOUBLE
    activation: Rounding = Rounding.DOUBLE  # LEAKY_RELU, PRELU


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
    """Two's-complement wrap to int32, as C++ arithmetic on int32 values does (values already
    in range, the usual case, are returned without the modulo pass)."""
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0 or (x.min() >= INT32_MIN and x.max() <= INT32_MAX):
        return x
    return ((x + 2**31) % 2**32) - 2**31


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
