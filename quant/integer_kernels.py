"""Integer kernels of the numerics contract (numpy, exact), one per deployable op.

They follow TFLite's reference kernels, which implement Jacob et al. 2018: int32 bias and
accumulators, a fixed-point multiplier and shift per output channel (``quant.fixed_point``),
the zero point added after requantization, a clamp to the fused activation's range. Codes are
int64 arrays in NCHW. Convolution and matrix sums run as float products whose every partial sum is
an integer the float type holds exactly, so no summation order can change a bit (``conv2d``
states the bound; ``_exact`` checks it).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .fixed_point import Rounding, multiply_by_quantized_multiplier, quantize_multiplier

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


def requantize(acc: np.ndarray, in_scale: float, w_scale: np.ndarray, out_scale: float,
               out_zp: int, low: int, high: int, channel_axis: int = 1,
               rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """acc (int32 values) * (s_in * s_w[c] / s_out) -> codes, per output channel; the real
    multiplier is formed in double from the float32 scales, as TFLite's kernels do."""
    pairs = [quantize_multiplier(float(np.float64(np.float32(in_scale)) * np.float64(ws)
                                       / np.float64(np.float32(out_scale))))
             for ws in np.asarray(w_scale, dtype=np.float32).reshape(-1)]
    shape = [1] * acc.ndim
    shape[channel_axis] = len(pairs)
    mult = np.array([p[0] for p in pairs], dtype=np.int64).reshape(shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(shape)
    out = multiply_by_quantized_multiplier(acc, mult, shift, rounding) + out_zp
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
    return acc if bias is None else acc + bias.astype(np.int64).reshape(1, -1)


def add(a: np.ndarray, a_q, b: np.ndarray, b_q, out_q, low: int, high: int,
        rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's quantized ADD: both inputs rescaled to twice the larger input scale with 20
    bits of headroom (15 for 16-bit codes), summed, then requantized to the output."""
    left_shift = 20 if max(a_q.bits, b_q.bits) <= 8 else 15
    twice_max = 2.0 * float(max(np.float32(a_q.scale), np.float32(b_q.scale)))
    m1, s1 = quantize_multiplier(float(np.float32(a_q.scale)) / twice_max)
    m2, s2 = quantize_multiplier(float(np.float32(b_q.scale)) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(out_q.scale))))

    def scaled(v, zp, m, s):
        return multiply_by_quantized_multiplier((v.astype(np.int64) - zp) << left_shift, m, s,
                                                rounding)

    raw = scaled(a, a_q.zero_point, m1, s1) + scaled(b, b_q.zero_point, m2, s2)
    out = multiply_by_quantized_multiplier(raw, mo, so, rounding) + out_q.zero_point
    return np.clip(out, low, high)


def spatial_mean(x: np.ndarray, in_q, out_q, rounding: Rounding = Rounding.DOUBLE) -> np.ndarray:
    """TFLite's quantized MEAN over H and W: the int32 sum, less the zero point's share, times
    s_in / s_out / count with the count folded into the multiplier (``QuantizedMeanOrSum``)."""
    count = x.shape[2] * x.shape[3]
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True) - in_q.zero_point * count
    mult, shift = quantize_multiplier(float(np.float32(in_q.scale))
                                      / float(np.float32(out_q.scale)))
    extra = min(count.bit_length() - 1, 32, 31 + shift)
    mult = (mult << extra) // count
    out = multiply_by_quantized_multiplier(total, mult, shift - extra, rounding) + out_q.zero_point
    return np.clip(out, out_q.qmin, out_q.qmax)


def max_pool(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Max over windows; padded positions never win (they are below every code)."""
    fill = int(x.min(initial=0)) - 1
    return _windows(x.astype(np.int64), kernel, strides, pads, (1, 1), fill).max(axis=(4, 5))
