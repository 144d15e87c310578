"""Integer kernels of the numerics contract (numpy, exact), one per deployable op.

They follow TFLite's reference kernels, which implement Jacob et al. 2018: int32 bias and
accumulators, a fixed-point multiplier and shift per output channel (``quant.fixed_point``),
the zero point added after requantization, a clamp to the fused activation's range. Codes are
int64 arrays in NCHW. Convolution and matrix sums run as float products whose every partial sum is
an integer the float type holds exactly, so no summation order can change a bit (``conv2d``
states the bound; ``_exact`` checks it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .fixed_point import INT32_MAX, INT32_MIN, Rounding, multiply_by_quantized_multiplier, \
    quantize_multiplier, rounding_divide_by_pot, rounding_doubling_high_mul, wrap_int32

EXACT_LIMIT = 2.0**53
FLOAT32_EXACT_LIMIT = 2.0**24


def _exact(x_offset: np.ndarray, w: np.ndarray, k: int) -> None:
    bound = float(np.abs(x_offset).max(initial=0)) * float(np.abs(w).max(initial=0)) * k
    if bound >= EXACT_LIMIT:  # never for 8/16-bit codes; guards the float64 shortcut
        raise OverflowError(f"accumulator bound {bound:.3g} exceeds float64's exact range")


def _windows(x: np.ndarray, kernel: tuple[int, int], strides, pads, dilations,
             fill: int = 0) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) view of ``x`` padded with ``fill`` (ONNX pads: t, l, b, r)."""
    t, l, b, r = pads
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    kh = (kernel[0] - 1) * dilations[0] + 1
    kw = (kernel[1] - 1) * dilations[1] + 1
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]


def _real(value) -> float:
    """A float32 scale (as the file holds it) as the double TFLite's Prepare computes with."""
    return float(np.float64(np.float32(value)))


def channel_multipliers(in_scale: float, w_scale: np.ndarray, out_scale: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) per output channel of ``s_in * s_w[c] / s_out``, the real number
    formed in double from the float32 scales, as TFLite's Prepare does (every integer
    consumer takes its numbers from here)."""
    pairs = [quantize_multiplier(float(np.float64(np.float32(in_scale)) * np.float64(ws)
                                       / np.float64(np.float32(out_scale))))
             for ws in np.asarray(w_scale, dtype=np.float32).reshape(-1)]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def requantize(acc: np.ndarray, in_scale: float, w_scale: np.ndarray, out_scale: float,
               out_zp: int, low: int, high: int, channel_axis: int = 1,
               rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """acc (int32 values) * (s_in * s_w[c] / s_out) -> codes, per output channel."""
    mult, shift = channel_multipliers(in_scale, w_scale, out_scale)
    shape = [1] * acc.ndim
    shape[channel_axis] = len(mult)
    out = multiply_by_quantized_multiplier(acc, mult.reshape(shape), shift.reshape(shape),
                                           rounding) + out_zp
    return np.clip(out, low, high)


def conv2d(x: np.ndarray, x_zp: int, w: np.ndarray, bias: np.ndarray | None, *, strides,
           pads, dilations, depthwise: bool, groups: int = 1) -> np.ndarray:
    """int32 accumulators of a dense, grouped or depthwise convolution (padding is real zero).

    The sums run in torch's float convolution, which is exact here: every product of two codes
    and every partial sum is an integer whose magnitude is at most ``max|x| * max_c sum|w_c|``,
    and below 2**24 (float32) or 2**53 (float64) floats hold such integers exactly, so no
    summation order can change a bit. float32 is used when that bound allows it (8-bit codes,
    the usual case), float64 otherwise (16-bit activations); ``_exact`` guards the rest.
    """
    import torch

    per_filter = int(np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(1).max(initial=0))
    x_offset = max(int(x.max(initial=x_zp)) - x_zp, x_zp - int(x.min(initial=x_zp)))
    bound = float(x_offset) * per_filter
    if bound >= EXACT_LIMIT:  # never for 8/16-bit codes; guards the float shortcut
        raise OverflowError(f"accumulator bound {bound:.3g} exceeds float64's exact range")
    dtype = torch.float32 if bound < FLOAT32_EXACT_LIMIT else torch.float64
    t, l, b, r = pads
    xt = torch.from_numpy(x).to(dtype) - x_zp  # codes and zero points are exact in float32
    if (t, l) != (b, r):  # asymmetric ONNX pads: pad explicitly (zeros, as the codes' offset)
        xt = torch.nn.functional.pad(xt, (l, r, t, b))
        t = l = 0
    wt = torch.from_numpy(np.ascontiguousarray(w)).to(dtype)
    with torch.no_grad():
        acc = torch.nn.functional.conv2d(xt, wt, stride=tuple(strides), padding=(t, l),
                                         dilation=tuple(dilations),
                                         groups=x.shape[1] if depthwise else groups)
    acc = acc.numpy().astype(np.int64)
    return acc if bias is None else acc + bias.astype(np.int64).reshape(1, -1, 1, 1)


def fully_connected(x: np.ndarray, x_zp: int, w: np.ndarray,
                    bias: np.ndarray | None) -> np.ndarray:
    xo = x.astype(np.int64) - x_zp
    _exact(xo, w, w.shape[1])
    acc = np.rint(xo.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    return acc if bias is None else acc + bias.astype(np.int64)  # over the last axis


class AddMultipliers(NamedTuple):
    """TFLite's quantized ADD/SUB numbers: both inputs rescaled to twice the larger input scale
    with ``left_shift`` bits of headroom, then the sum requantized to the output."""

    left_shift: int
    a: tuple[int, int]  # (multiplier, shift)
    b: tuple[int, int]
    out: tuple[int, int]


def add_multipliers(a_q, b_q, out_q, *, negate_second: bool = False) -> AddMultipliers:
    left_shift = 20 if max(a_q.bits, b_q.bits) <= 8 else 15
    twice_max = 2.0 * max(_real(a_q.scale), _real(b_q.scale))
    m2, s2 = quantize_multiplier(_real(b_q.scale) / twice_max)
    return AddMultipliers(left_shift, quantize_multiplier(_real(a_q.scale) / twice_max),
                          (-m2 if negate_second else m2, s2),
                          quantize_multiplier(twice_max / ((1 << left_shift)
                                                           * _real(out_q.scale))))


def add(a: np.ndarray, a_q, b: np.ndarray, b_q, out_q, low: int, high: int,
        rounding: Rounding = Rounding.DOUBLE, *, negate_second: bool = False) -> np.ndarray:
    """TFLite's quantized ADD (SUB: the second input's multiplier negated)."""
    m = add_multipliers(a_q, b_q, out_q, negate_second=negate_second)

    def scaled(v, zp, mult_shift):
        return multiply_by_quantized_multiplier((v.astype(np.int64) - zp) << m.left_shift,
                                                *mult_shift, rounding)

    raw = scaled(a, a_q.zero_point, m.a) + scaled(b, b_q.zero_point, m.b)
    out = multiply_by_quantized_multiplier(raw, *m.out, rounding) + out_q.zero_point
    return np.clip(out, low, high)


def mean_multiplier(count: int, in_q, out_q) -> tuple[int, int]:
    """TFLite's ``QuantizedMeanOrSum``: ``s_in / s_out / count`` with the count folded into the
    multiplier (as many bits of it as the multiplier has room for)."""
    mult, shift = quantize_multiplier(float(np.float32(in_q.scale))
                                      / float(np.float32(out_q.scale)))
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    return (mult << extra) // count, shift - extra


def spatial_mean(x: np.ndarray, in_q, out_q, rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's quantized MEAN over H and W: the int32 sum, less the zero point's share, times
    ``mean_multiplier``."""
    count = x.shape[2] * x.shape[3]
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True) - in_q.zero_point * count
    mult, shift = mean_multiplier(count, in_q, out_q)
    out = multiply_by_quantized_multiplier(total, mult, shift, rounding) + out_q.zero_point
    return np.clip(out, out_q.qmin, out_q.qmax)


def max_pool(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Max over windows; padded positions never win (they are below every code)."""
    fill = int(x.min(initial=0)) - 1
    return _windows(x.astype(np.int64), kernel, strides, pads, (1, 1), fill).max(axis=(4, 5))


def codes_multiplier(in_q, out_q) -> tuple[int, int]:
    """``s_in / s_out`` (double, from the float32 scales): REQUANTIZE's multiplier."""
    return quantize_multiplier(_real(in_q.scale) / _real(out_q.scale))


def mul_multiplier(a_q, b_q, out_q) -> tuple[int, int]:
    """MUL's multiplier ``s_a * s_b / s_out`` as TFLite's mul.cc forms it: in float32
    arithmetic (``input1->params.scale * input2->params.scale / output->params.scale``, float
    operands), widened to double only afterwards. Forming it in double gave a multiplier a
    few units larger, one output code off on ~0.03% of LSNet's outputs against LiteRT."""
    real = np.float32(np.float32(a_q.scale) * np.float32(b_q.scale)) / np.float32(out_q.scale)
    return quantize_multiplier(float(np.float32(real)))


def requantize_codes(x: np.ndarray, in_q, out_q, rounding: Rounding = Rounding.DOUBLE
                     ) -> np.ndarray:
    """TFLite's QUANTIZE of an integer tensor (requantize): ``(q - zp_in) * s_in / s_out``
    with the multiplier formed in double from the float32 scales, plus ``zp_out``."""
    mult, shift = codes_multiplier(in_q, out_q)
    out = multiply_by_quantized_multiplier(x.astype(np.int64) - in_q.zero_point, mult, shift,
                                           rounding) + out_q.zero_point
    return np.clip(out, out_q.qmin, out_q.qmax)


def mul(a: np.ndarray, a_q, b: np.ndarray, b_q, out_q, low: int, high: int,
        rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's quantized MUL: the product of the offset codes (an int32), times
    ``s_a * s_b / s_out`` (double, from the float32 scales) as a fixed-point multiplier."""
    mult, shift = mul_multiplier(a_q, b_q, out_q)
    prod = (a.astype(np.int64) - a_q.zero_point) * (b.astype(np.int64) - b_q.zero_point)
    out = multiply_by_quantized_multiplier(prod, mult, shift, rounding) + out_q.zero_point
    return np.clip(out, low, high)


def sub(a: np.ndarray, a_q, b: np.ndarray, b_q, out_q, low: int, high: int,
        rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's quantized SUB: ADD's arithmetic with the second input's multiplier negated."""
    return add(a, a_q, b, b_q, out_q, low, high, rounding, negate_second=True)


def average_pool(x: np.ndarray, kernel, strides, pads, low: int, high: int,
                 signed: bool) -> np.ndarray:
    """TFLite's int8 AVERAGE_POOL_2D: the sum of the codes in the window (padding not
    counted), divided by the count rounding half away from zero; input and output share one
    quantization. The sums are of int8 codes, so a uint8 tensor is shifted by 128 first (the
    .tflite holds it as int8 with ``zero_point - 128``)."""
    shift = 0 if signed else 128
    codes = x.astype(np.int64) - shift
    ones = np.ones((1, 1, *x.shape[2:]), dtype=np.int64)
    total = _windows(codes, kernel, strides, pads, (1, 1)).sum(axis=(4, 5))
    count = _windows(ones, kernel, strides, pads, (1, 1)).sum(axis=(4, 5))
    half = count // 2
    avg = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    return np.clip(avg + shift, low, high)


def _f32(x) -> np.float32:
    return np.float32(x)


def _logistic(x: np.float32) -> np.float32:  # 1.0f / (1.0f + std::exp(-x))
    return _f32(_f32(1.0) / _f32(_f32(1.0) + _f32(math.exp(-float(x)))))


def _tanh(x: np.float32) -> np.float32:
    return _f32(math.tanh(float(x)))


def _gelu(x: np.float32) -> np.float32:  # 0.5f * x * std::erfc(x * (float)-M_SQRT1_2)
    return _f32(_f32(_f32(0.5) * x) * _f32(math.erfc(float(_f32(x * _f32(-math.sqrt(0.5)))))))


def _gelu_tanh(x: np.float32) -> np.float32:
    inner = _f32(x + _f32(_f32(_f32(_f32(0.044715) * x) * x) * x))
    k = _f32(2.0 / math.sqrt(math.pi) * math.sqrt(0.5))
    return _f32(_f32(_f32(0.5) * x) * _f32(_f32(1.0) + _f32(math.tanh(float(_f32(k * inner))))))


LUT_FUNCTIONS = {"LOGISTIC": _logistic, "TANH": _tanh, "GELU": _gelu,
                 "GELU_TANH": _gelu_tanh}


def lut_table(function: str, in_q, out_q) -> np.ndarray:
    """The 256-entry table TFLite's int8 kernels build for an elementwise function
    (``LUTPopulate``): every input code dequantized in float32, transformed in float32 (the
    transcendental correctly rounded), times ``1 / s_out`` in float32, rounded half away from
    zero, plus the zero point, clamped. Computed on int8 codes (uint8 tensors shifted by 128,
    as the .tflite holds them); ``lookup`` indexes it with the input's codes."""
    if in_q.bits != 8 or out_q.bits != 8:
        raise ValueError(f"{function}: lookup tables are defined for 8-bit tensors only")
    fn = LUT_FUNCTIONS[function]
    zp_in = in_q.zero_point - (0 if in_q.signed else 128)
    zp_out = out_q.zero_point - (0 if out_q.signed else 128)
    s_in = _f32(in_q.scale)
    inverse = _f32(_f32(1.0) / _f32(out_q.scale))
    table = np.empty(256, dtype=np.int64)
    for i, code in enumerate(range(-128, 128)):
        value = fn(_f32(s_in * _f32(code - zp_in)))
        scaled = float(_f32(value * inverse))
        rounded = math.floor(abs(scaled) + 0.5) * (1 if scaled >= 0 else -1)
        table[i] = min(127, max(-128, int(rounded) + zp_out))
    return table + (0 if out_q.signed else 128)


def lookup(x: np.ndarray, table: np.ndarray, in_q) -> np.ndarray:
    return table[x.astype(np.int64) + (128 if in_q.signed else 0)]


def _int16_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``: (int16, exponent)."""
    mult, exponent = quantize_multiplier(real)
    if mult >= INT32_MAX - (1 << 15):
        return 32767, exponent
    return (mult + (1 << 15)) >> 16, exponent


def hard_swish_multipliers(in_q, out_q) -> tuple[int, int, int, int]:
    """HARD_SWISH's (output multiplier, exponent, relu-ish multiplier, exponent), 16-bit, as
    ``HardSwishPrepare`` forms them from float32 scales."""
    hires = _f32(_f32(1.0 / 128.0) * _f32(in_q.scale))
    out_mult, out_exp = _int16_multiplier(float(_f32(hires / _f32(out_q.scale))))
    relu_mult, relu_exp = _int16_multiplier(float(_f32(hires / _f32(3.0 / 32768.0))))
    if out_exp > 0:
        raise ValueError("HARD_SWISH: output scale below input scale / 128 (TFLite refuses)")
    return out_mult, out_exp, relu_mult, relu_exp


def hard_swish(x: np.ndarray, in_q, out_q) -> np.ndarray:
    """TFLite's int8 HARD_SWISH (``reference_ops::HardSwish``): 16-bit fixed point, the input
    on a 2**7 finer grid, a "relu-ish" factor in [0, 1] from saturating rescaling of [-3, 3],
    a truncating doubling high multiply, then the output shift. Parameters as ``HardSwishPrepare``
    forms them (float32 scales)."""
    out_mult, out_exp, relu_mult, relu_exp = hard_swish_multipliers(in_q, out_q)
    value = x.astype(np.int64) - in_q.zero_point
    hires_value = value * (1 << 7)
    preshift = rounding_doubling_high_mul(hires_value, out_mult, bits=16)
    reluish = hires_value
    if relu_exp > 0:
        reluish = np.clip(reluish * (1 << (relu_exp - 1)), -32768, 32767)
    reluish = rounding_doubling_high_mul(reluish, relu_mult, bits=16)
    if relu_exp > 0:
        reluish = np.clip(reluish * 2, -32768, 32767)
    elif relu_exp < 0:
        reluish = rounding_divide_by_pot(reluish, -relu_exp)
    reluish = (reluish + (1 << 15)) >> 1
    product = reluish * preshift
    product = np.trunc(product / (1 << 15)).astype(np.int64)  # SaturatingDoublingHighMul
    product = np.where((reluish == -32768) & (preshift == -32768), 32767, product)
    out = rounding_divide_by_pot(product, -out_exp) + out_q.zero_point
    return np.clip(out, out_q.qmin, out_q.qmax)


def leaky_relu(x: np.ndarray, in_q, alpha: float, out_q,
               rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's int8 LEAKY_RELU: ``q - zp`` times ``s_in / s_out`` where it is >= 0, times
    ``s_in * alpha / s_out`` below (both multipliers in double from float32 numbers)."""
    v = x.astype(np.int64) - in_q.zero_point
    identity = quantize_multiplier(_real(in_q.scale) / _real(out_q.scale))
    slope = quantize_multiplier(_real(in_q.scale) * _real(alpha) / _real(out_q.scale))
    out = np.where(v >= 0, multiply_by_quantized_multiplier(v, *identity, rounding),
                   multiply_by_quantized_multiplier(v, *slope, rounding))
    return np.clip(out + out_q.zero_point, out_q.qmin, out_q.qmax)


def prelu(x: np.ndarray, in_q, alpha: np.ndarray, alpha_q, out_q,
          rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's int8 PRELU: ``v = q - zp``; ``v * s_in / s_out`` where ``v >= 0``, else
    ``v * (a - zp_a)`` times ``s_in * s_a / s_out``; ``alpha`` broadcasts like the input."""
    v = x.astype(np.int64) - in_q.zero_point
    a = alpha.astype(np.int64) - alpha_q.zero_point
    m1 = quantize_multiplier(_real(in_q.scale) / _real(out_q.scale))
    m2 = quantize_multiplier(_real(in_q.scale) * _real(alpha_q.scale) / _real(out_q.scale))
    out = np.where(v >= 0, multiply_by_quantized_multiplier(v, *m1, rounding),
                   multiply_by_quantized_multiplier(v * a, *m2, rounding))
    return np.clip(out + out_q.zero_point, out_q.qmin, out_q.qmax)


# ---- SOFTMAX: gemmlowp's fixed-point exp and reciprocal, as TFLite's int8 reference kernel

def _fp_mul(a, b):
    """Product of two gemmlowp fixed-point raws (SaturatingRoundingDoublingHighMul)."""
    return rounding_doubling_high_mul(a, b)


def _fp_pot(x, exponent: int):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32 raws."""
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def _exp_on_negative_values(a: np.ndarray, integer_bits: int = 5) -> np.ndarray:
    """exp(a) for a <= 0 given in Q(integer_bits).(31 - integer_bits); result in Q0.31."""
    fractional = 31 - integer_bits
    quarter = 1 << (fractional - 2)
    a_mod = (a & (quarter - 1)) - quarter
    x = _fp_pot(a_mod, integer_bits) + (1 << 28)  # Rescale<0>, then + 1/8
    x2 = _fp_mul(x, x)
    x3 = _fp_mul(x2, x)
    x4 = _fp_mul(x2, x2)
    poly = _fp_pot(_fp_mul(_fp_pot(x4, -2) + x3, 715827883) + x2, -1)
    result = 1895147668 + _fp_mul(1895147668, x + poly)
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (fractional + exponent))) != 0
            result = np.where(bit, _fp_mul(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1) in Q0.31 (Newton-Raphson, gemmlowp); result Q0.31."""
    total = a.astype(np.int64) + INT32_MAX
    half = (total + np.where(total >= 0, 1, -1)) // 2  # RoundingHalfSum: truncating division
    half = np.where(total < 0, -((-total + 1) // 2), half)
    x = 1515870810 + _fp_mul(half, -1010580540)  # F2: 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = (1 << 29) - _fp_mul(half, x)
        x = x + _fp_pot(_fp_mul(x, one_minus), 2)
    return _fp_pot(x, 1)


def softmax_multiplier(in_q, beta: float = 1.0) -> tuple[int, int, int]:
    """SOFTMAX's input multiplier, left shift and difference radius (``SoftmaxPrepare``):
    ``beta * s_in`` into Q5.26; differences below ``-radius`` contribute nothing."""
    real = min(beta * float(np.float32(in_q.scale)) * (1 << (31 - 5)), 2.0**31 - 1.0)
    mult, left = quantize_multiplier(real)
    return mult, left, math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << left))


def softmax(x: np.ndarray, in_q, out_q, beta: float = 1.0) -> np.ndarray:
    """TFLite's int8 SOFTMAX over the last axis (``reference_ops::Softmax``): input
    differences to the row's maximum scaled into Q5.26 by ``beta * s_in``, gemmlowp's exp, the
    sum in Q12.19, its reciprocal, output on the fixed 1/256 grid (zero point -128 in int8)."""
    shift = 0 if in_q.signed else 128
    codes = x.astype(np.int64) - shift
    mult, left, radius = softmax_multiplier(in_q, beta)
    diff = codes - codes.max(axis=-1, keepdims=True)
    valid = diff >= -radius
    scaled = rounding_doubling_high_mul(wrap_int32(diff * (1 << left)), mult)
    exps = np.where(valid, _exp_on_negative_values(scaled), 0)
    total = np.where(valid, rounding_divide_by_pot(exps, 12), 0).sum(axis=-1, keepdims=True)
    headroom = 32 - np.frexp(total.astype(np.float64))[1].astype(np.int64)  # leading zeros
    over_unit = 12 - headroom
    shifted = ((total << headroom) - (1 << 31))
    scale = _one_over_one_plus_x(wrap_int32(shifted))
    out = rounding_divide_by_pot(_fp_mul(scale, exps), over_unit + 31 - 8) - 128
    out = np.where(valid, np.clip(out, -128, 127), -128)
    out_shift = 0 if out_q.signed else 128
    return out + out_shift
