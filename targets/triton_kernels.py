"""Triton kernels of the numerics contract: int8 codes in, int32 accumulators, the fixed-point
requantization of ``quant.fixed_point`` (64-bit products, rounding shifts) and clamps, so that
every output equals ``quant.integer_kernels`` bit for bit.

Codes are stored as int8: a uint8 tensor is held as ``code - 128`` (its zero point moved with
it), which changes no sum of ``(code - zero_point) * weight``. Convolutions load padded
positions as the stored zero point and subtract ``zero_point * sum(w)`` once per output channel
(folded into the bias), so the inner loop is a plain int8 x int8 -> int32 ``tl.dot`` (tensor
cores on the GPU). Two dense-convolution algorithms:

- implicit GEMM: the GEMM's A operand is gathered from the input with bounds masks, K ordered
  (kh, kw, c) so that channels-last loads are contiguous; no workspace;
- im2win (Lu et al., "Im2win: An Efficient Convolution Paradigm on GPU", 2023): the padded input
  is rearranged once into windows, (N, Ho, Wp, Kh, C), in which the whole Kh x Kw x C window of
  an output pixel is one contiguous run (K ordered (kw, kh, c)) and neighbouring output pixels'
  runs overlap: a GEMM whose A rows are strided views, with no masks inside the window, at
  Kh / stride_h times the input's memory (im2col's: Kh * Kw * Ho * Wo / (H * W) times).

``TRITON_INTERPRET=1`` runs these kernels on the CPU (numpy), which is how CI proves them exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from convdeploy.quant.fixed_point import Rounding


@dataclass(frozen=True)
class Requant:
    """A fixed-point multiplier applied as the GPU applies it (per channel or one scalar):
    DOUBLE: ``x << left``, rounding doubling high multiply by ``mult``, rounding right shift;
    SINGLE: ``(x * mult + nudge) >> right``. Tensors are int32/int64 on the device."""

    mult: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    nudge: torch.Tensor
    single: bool
    first: tuple[int, int, int, int]  # channel 0's numbers on the host (no device read back)

    @classmethod
    def build(cls, mult, shift, rounding: Rounding, device) -> "Requant":
        mult = np.asarray(mult, dtype=np.int64).reshape(-1)
        shift = np.asarray(shift, dtype=np.int64).reshape(-1)
        if rounding is Rounding.SINGLE:
            left = np.zeros_like(shift)
            right = 31 - shift
        else:
            left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
        nudge = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
        as_t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(device, dt)  # noqa: E731
        return cls(as_t(mult, torch.int64), as_t(left, torch.int32), as_t(right, torch.int64),
                   as_t(nudge, torch.int64), rounding is Rounding.SINGLE,
                   (int(mult[0]), int(left[0]), int(right[0]), int(nudge[0])))

    def channels(self, start: int, size: int) -> "Requant":
        """The multipliers of output channels [start, start + size) (a grouped conv's group)."""
        fields = ("mult", "left", "right", "nudge")
        part = {f: getattr(self, f)[start:start + size].contiguous() for f in fields}
        return Requant(**part, single=self.single,
                       first=tuple(int(getattr(self, f)[start]) for f in fields))

    def scalars(self) -> tuple[int, int, int, int]:
        """A per-tensor multiplier as kernel arguments (read from the host copy: a read from
        the device would synchronise, which CUDA-graph capture forbids)."""
        return self.first


@triton.jit
def _requant(x, mult, left, right, nudge, SINGLE: tl.constexpr):
    """int32 ``x`` (already wrapped to 32 bits) times the fixed-point multiplier -> int64."""
    if SINGLE:
        out = (x.to(tl.int64) * mult + nudge) >> right
    else:
        x = x << left  # int32: wraps as C++ does (quant.fixed_point.wrap_int32)
        hi = (x.to(tl.int64) * mult + (1 << 30)) >> 31
        out = (hi + nudge + tl.where(right > 0, hi >> 63, 0)) >> right
    return out


@triton.jit
def _store_codes(y_ptrs, v, zp, low, high, off, mask):
    """Add the output zero point, clamp to the fused activation's range (codes), store int8."""
    v = tl.minimum(tl.maximum(v + zp, low), high) - off
    tl.store(y_ptrs, v.to(tl.int8), mask=mask)


@triton.jit
def _epilogue(acc, channels, col, row, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y_ptrs, y_zp, low,
              high, y_off, SINGLE: tl.constexpr):
    """A (rows x channels) tile of int32 sums: plus the folded bias, requantized with each
    output channel's multiplier, zero point, clamp, stored as int8."""
    acc += tl.load(b_ptr + channels, mask=col, other=0)[None, :]
    v = _requant(acc, tl.load(m_ptr + channels, mask=col, other=0)[None, :],
                 tl.load(l_ptr + channels, mask=col, other=0)[None, :],
                 tl.load(r_ptr + channels, mask=col, other=0)[None, :],
                 tl.load(n_ptr + channels, mask=col, other=0)[None, :], SINGLE)
    _store_codes(y_ptrs, v, y_zp, low, high, y_off, row[:, None] & col[None, :])


@triton.jit
def _weight_tile(w_ptr, rk, rn, K, CO):
    """The GEMM's B tile: int8 weights stored (K, CO), zeros outside."""
    return tl.load(w_ptr + rk[:, None] * CO + rn[None, :],
                   mask=(rk[:, None] < K) & (rn[None, :] < CO), other=0)


@triton.jit
def _conv_gemm_kernel(x_ptr, w_ptr, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y_ptr,
                      M, CO, K, C, H, W, HO, WO,
                      sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                      SH, SW, PT, PL, DH, DW, x_zp, y_zp, low, high, y_off,
                      KW: tl.constexpr, SINGLE: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Implicit GEMM: out[m, co] = sum_k A[m, k] * W[k, co], A gathered with bounds masks."""
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    n = rm // (HO * WO)
    oh = (rm // WO) % HO
    ow = rm % WO
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        c = rk % C
        kw = (rk // C) % KW
        kh = rk // (C * KW)
        ih = oh[:, None] * SH - PT + kh[None, :] * DH
        iw = ow[:, None] * SW - PL + kw[None, :] * DW
        inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_ptr + n[:, None] * sxn + c[None, :] * sxc + ih * sxh + iw * sxw,
                    mask=inside & (rm[:, None] < M) & (rk[None, :] < K), other=x_zp)
        acc += tl.dot(a, _weight_tile(w_ptr, rk, rn, K, CO))
    y = y_ptr + (n * syn + oh * syh + ow * syw)[:, None] + rn[None, :] * syc
    _epilogue(acc, rn, rn < CO, rm < M, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y, y_zp, low, high,
              y_off, SINGLE)


@triton.jit
def _im2win_kernel(x_ptr, win_ptr, total, C, H, W, HO, WP, sxn, sxc, sxh, sxw,
                   SH, PT, PL, DH, x_zp, KH: tl.constexpr, BLOCK: tl.constexpr):
    """The im2win transform in one pass: win[n, i, w, kh, c] = x[n, c, i*SH - PT + kh*DH,
    w - PL], the zero point where that falls in the padding."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    c = idx % C
    kh = (idx // C) % KH
    wp = (idx // (C * KH)) % WP
    oh = (idx // (C * KH * WP)) % HO
    n = idx // (C * KH * WP * HO)
    ih = oh * SH - PT + kh * DH
    iw = wp - PL
    inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (idx < total)
    v = tl.load(x_ptr + n * sxn + c * sxc + ih * sxh + iw * sxw, mask=inside, other=x_zp)
    tl.store(win_ptr + idx, v, mask=idx < total)


@triton.jit
def _conv_im2win_kernel(win_ptr, w_ptr, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y_ptr,
                        M, CO, K, HO, WO, WP,
                        syn, syc, syh, syw, SW, DW, y_zp, low, high, y_off,
                        KHC: tl.constexpr, SINGLE: tl.constexpr,
                        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """im2win GEMM: A[m, k] = win[row(m) + offset(k)], one contiguous run per window (for
    dilation 1); the windows of neighbouring output pixels overlap in memory."""
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    n = rm // (HO * WO)
    oh = (rm // WO) % HO
    ow = rm % WO
    row = ((n * HO + oh) * WP + ow * SW) * KHC
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        offset = (rk // KHC) * (DW * KHC) + rk % KHC
        a = tl.load(win_ptr + row[:, None] + offset[None, :],
                    mask=(rm[:, None] < M) & (rk[None, :] < K), other=0)
        acc += tl.dot(a, _weight_tile(w_ptr, rk, rn, K, CO))
    y = y_ptr + (n * syn + oh * syh + ow * syw)[:, None] + rn[None, :] * syc
    _epilogue(acc, rn, rn < CO, rm < M, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y, y_zp, low, high,
              y_off, SINGLE)


@triton.jit
def _depthwise_kernel(x_ptr, w_ptr, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y_ptr,
                      P, CO, H, W, HO, WO, MULT,
                      sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                      SH, SW, PT, PL, DH, DW, x_zp, y_zp, low, high, y_off,
                      KH: tl.constexpr, KW: tl.constexpr, SINGLE: tl.constexpr,
                      BP: tl.constexpr, BC: tl.constexpr):
    """Direct depthwise convolution: a block of output pixels x a block of channels, int32
    products summed over the kh x kw taps (output channel co reads input channel co // MULT)."""
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    rc = tl.program_id(1) * BC + tl.arange(0, BC)
    n = rp // (HO * WO)
    oh = (rp // WO) % HO
    ow = rp % WO
    ci = rc // MULT
    col = rc < CO
    acc = tl.zeros((BP, BC), dtype=tl.int32)
    for kh in range(KH):
        for kw in range(KW):
            ih = oh * SH - PT + kh * DH
            iw = ow * SW - PL + kw * DW
            inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (rp < P)
            a = tl.load(x_ptr + (n * sxn + ih * sxh + iw * sxw)[:, None] + ci[None, :] * sxc,
                        mask=inside[:, None] & col[None, :], other=x_zp)
            w = tl.load(w_ptr + (kh * KW + kw) * CO + rc, mask=col, other=0)
            acc += a.to(tl.int32) * w.to(tl.int32)[None, :]
    y = y_ptr + (n * syn + oh * syh + ow * syw)[:, None] + rc[None, :] * syc
    _epilogue(acc, rc, col, rp < P, b_ptr, m_ptr, l_ptr, r_ptr, n_ptr, y, y_zp, low, high,
              y_off, SINGLE)


@triton.jit
def _add_kernel(a_ptr, b_ptr, y_ptr, numel, a_zp, b_zp, LEFT: tl.constexpr,
                am, al, ar, an, bm, bl, br, bn, om, ol, orr, on, y_zp, low, high, y_off,
                SINGLE: tl.constexpr, BLOCK: tl.constexpr):
    """TFLite's quantized ADD/SUB (quant.integer_kernels.add), elementwise."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < numel
    a = (tl.load(a_ptr + i, mask=mask, other=0).to(tl.int32) - a_zp) << LEFT
    b = (tl.load(b_ptr + i, mask=mask, other=0).to(tl.int32) - b_zp) << LEFT
    raw = _requant(a, am, al, ar, an, SINGLE) + _requant(b, bm, bl, br, bn, SINGLE)
    v = _requant(raw.to(tl.int32), om, ol, orr, on, SINGLE)
    _store_codes(y_ptr + i, v, y_zp, low, high, y_off, mask)


@triton.jit
def _mul_kernel(a_ptr, b_ptr, y_ptr, numel, a_zp, b_zp, mm, ml, mr, mn, y_zp, low, high, y_off,
                HAS_B: tl.constexpr, SINGLE: tl.constexpr, BLOCK: tl.constexpr):
    """TFLite's quantized MUL, and without ``b`` REQUANTIZE (``(a - zp) * M + zp_out``)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < numel
    a = tl.load(a_ptr + i, mask=mask, other=0).to(tl.int32) - a_zp
    if HAS_B:
        a = a * (tl.load(b_ptr + i, mask=mask, other=0).to(tl.int32) - b_zp)
    v = _requant(a, mm, ml, mr, mn, SINGLE)
    _store_codes(y_ptr + i, v, y_zp, low, high, y_off, mask)


@triton.jit
def _mean_kernel(x_ptr, y_ptr, C, HW, sxn, sxc, sxp, syn, syc, correction,
                 mm, ml, mr, mn, y_zp, low, high, y_off, SINGLE: tl.constexpr,
                 BP: tl.constexpr, BC: tl.constexpr):
    """Spatial MEAN: the int32 sum of a (sample, channel block) over H*W, less the zero point's
    share (``correction``), requantized with the count folded into the multiplier."""
    n = tl.program_id(0)
    rc = tl.program_id(1) * BC + tl.arange(0, BC)
    col = rc < C
    total = tl.zeros((BC,), dtype=tl.int32)
    for p0 in range(0, HW, BP):
        rp = p0 + tl.arange(0, BP)
        x = tl.load(x_ptr + n * sxn + rp[:, None] * sxp + rc[None, :] * sxc,
                    mask=(rp < HW)[:, None] & col[None, :], other=0)
        total += tl.sum(x.to(tl.int32), axis=0)
    v = _requant(total - correction, mm, ml, mr, mn, SINGLE)
    _store_codes(y_ptr + n * syn + rc * syc, v, y_zp, low, high, y_off, col)


@triton.jit
def _pool_kernel(x_ptr, y_ptr, P, C, H, W, HO, WO,
                 sxn, sxc, sxh, sxw, syn, syc, syh, syw, SH, SW, PT, PL, low, high, off,
                 KH: tl.constexpr, KW: tl.constexpr, AVERAGE: tl.constexpr,
                 BP: tl.constexpr, BC: tl.constexpr):
    """MAX_POOL_2D (padding never wins) or TFLite's int8 AVERAGE_POOL_2D (sum of the window's
    codes over the positions inside, divided rounding half away from zero)."""
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    rc = tl.program_id(1) * BC + tl.arange(0, BC)
    n = rp // (HO * WO)
    oh = (rp // WO) % HO
    ow = rp % WO
    col = rc < C
    best = tl.full((BP, BC), -128, tl.int32)
    total = tl.zeros((BP, BC), dtype=tl.int32)
    count = tl.zeros((BP,), dtype=tl.int32)
    for kh in range(KH):
        for kw in range(KW):
            ih = oh * SH - PT + kh
            iw = ow * SW - PL + kw
            inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (rp < P)
            x = tl.load(x_ptr + (n * sxn + ih * sxh + iw * sxw)[:, None] + rc[None, :] * sxc,
                        mask=inside[:, None] & col[None, :], other=-128).to(tl.int32)
            best = tl.maximum(best, x)
            total += tl.where(inside[:, None], x, 0)
            count += inside.to(tl.int32)
    if AVERAGE:
        cnt = tl.maximum(count, 1)[:, None]
        half = cnt // 2
        # both operands are non-negative in each branch: C's truncating division is a floor
        v = tl.where(total > 0, (total + half) // cnt, -((half - total) // cnt)) + off
    else:
        v = best + off
    y = y_ptr + (n * syn + oh * syh + ow * syw)[:, None] + rc[None, :] * syc
    _store_codes(y, v, 0, low, high, off, (rp < P)[:, None] & col[None, :])


def _grid_2d(rows: int, cols: int, br: int, bc: int) -> tuple[int, int]:
    return (triton.cdiv(rows, br), triton.cdiv(cols, bc))


def conv_blocks(co: int) -> tuple[int, int, int]:
    """(BM, BN, BK) for a dense convolution: 64-row tiles (the Hopper tensor-core instruction's
    M), N as small as the channel count allows."""
    return 64, 64 if co > 32 else 32, 32


def conv_gemm(x: torch.Tensor, y: torch.Tensor, weight_kc: torch.Tensor, bias: torch.Tensor,
              rq: Requant, *, kernel, strides, pads, dilations, x_zp: int, y_zp: int,
              low: int, high: int, y_off: int) -> None:
    """Implicit-GEMM convolution of ``x`` (N, C, H, W; any strides) into ``y``."""
    n, c, h, w = x.shape
    _, co, ho, wo = y.shape
    bm, bn, bk = conv_blocks(co)
    m = n * ho * wo
    _conv_gemm_kernel[_grid_2d(m, co, bm, bn)](
        x, weight_kc, bias, rq.mult, rq.left, rq.right, rq.nudge, y,
        m, co, weight_kc.shape[0], c, h, w, ho, wo, *x.stride(), *y.stride(),
        strides[0], strides[1], pads[0], pads[1], dilations[0], dilations[1],
        x_zp, y_zp, low, high, y_off, KW=kernel[1], SINGLE=rq.single, BM=bm, BN=bn, BK=bk)


def im2win(x: torch.Tensor, *, kernel, strides, pads, dilations, x_zp: int,
           out_h: int) -> torch.Tensor:
    """The im2win tensor (N, Ho, Wp, Kh, C): for output row i, the Kh padded input rows it reads
    (i * s_h + kh * d_h), interleaved column by column so a window is one contiguous run; one
    kernel pass over it, padding written as the zero point."""
    n, c, h, w = x.shape
    t, l, b, r = pads
    wp = w + l + r
    win = torch.empty((n, out_h, wp, kernel[0], c), dtype=torch.int8, device=x.device)
    total = win.numel()
    _im2win_kernel[(triton.cdiv(total, 1024),)](
        x, win, total, c, h, w, out_h, wp, *x.stride(), strides[0], t, l, dilations[0], x_zp,
        KH=kernel[0], BLOCK=1024)
    return win


def conv_im2win(win: torch.Tensor, y: torch.Tensor, weight_kc: torch.Tensor,
                bias: torch.Tensor, rq: Requant, *, strides, dilations, y_zp: int, low: int,
                high: int, y_off: int) -> None:
    """The im2win GEMM over a window tensor from ``im2win``; K ordered (kw, kh, c)."""
    n, _, wp, kh, c = win.shape
    _, co, ho, wo = y.shape
    bm, bn, bk = conv_blocks(co)
    m = n * ho * wo
    _conv_im2win_kernel[_grid_2d(m, co, bm, bn)](
        win, weight_kc, bias, rq.mult, rq.left, rq.right, rq.nudge, y,
        m, co, weight_kc.shape[0], ho, wo, wp, *y.stride(), strides[1], dilations[1],
        y_zp, low, high, y_off, KHC=kh * c, SINGLE=rq.single, BM=bm, BN=bn, BK=bk)


def depthwise(x: torch.Tensor, y: torch.Tensor, weight_tc: torch.Tensor, bias: torch.Tensor,
              rq: Requant, *, kernel, strides, pads, dilations, x_zp: int, y_zp: int,
              low: int, high: int, y_off: int) -> None:
    n, c, h, w = x.shape
    _, co, ho, wo = y.shape
    p = n * ho * wo
    _depthwise_kernel[_grid_2d(p, co, 64, 32)](
        x, weight_tc, bias, rq.mult, rq.left, rq.right, rq.nudge, y,
        p, co, h, w, ho, wo, co // c, *x.stride(), *y.stride(),
        strides[0], strides[1], pads[0], pads[1], dilations[0], dilations[1],
        x_zp, y_zp, low, high, y_off, KH=kernel[0], KW=kernel[1], SINGLE=rq.single, BP=64,
        BC=32)


def add(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, a_zp: int, b_zp: int,
        left_shift: int, ra: Requant, rb: Requant, ro: Requant, y_zp: int, low: int, high: int,
        y_off: int) -> None:
    """Elementwise over three tensors of one shape and memory layout."""
    numel = y.numel()
    _add_kernel[(triton.cdiv(numel, 1024),)](
        a, b, y, numel, a_zp, b_zp, left_shift, *ra.scalars(), *rb.scalars(), *ro.scalars(),
        y_zp, low, high, y_off, SINGLE=ro.single, BLOCK=1024)


def mul(a: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, a_zp: int, b_zp: int,
        rq: Requant, y_zp: int, low: int, high: int, y_off: int) -> None:
    """MUL of two tensors of one shape and layout; REQUANTIZE of ``a`` when ``b`` is None."""
    numel = y.numel()
    _mul_kernel[(triton.cdiv(numel, 1024),)](a, a if b is None else b, y, numel, a_zp, b_zp,
                                             *rq.scalars(), y_zp, low, high, y_off,
                                             HAS_B=b is not None, SINGLE=rq.single,
                                             BLOCK=1024)


def mean(x: torch.Tensor, y: torch.Tensor, correction: int, rq: Requant, y_zp: int, low: int,
         high: int, y_off: int) -> None:
    """Mean over H and W of a channels-last (N, C, H, W) ``x`` into (N, C, 1, 1) ``y``."""
    n, c, h, w = x.shape
    assert x.stride(2) == w * x.stride(3), "mean reads H*W as one axis"
    _mean_kernel[(n, triton.cdiv(c, 32))](
        x, y, c, h * w, x.stride(0), x.stride(1), x.stride(3), y.stride(0), y.stride(1),
        correction, *rq.scalars(), y_zp, low, high, y_off, SINGLE=rq.single, BP=64, BC=32)


def pool(x: torch.Tensor, y: torch.Tensor, *, kernel, strides, pads, low: int, high: int,
         off: int, average: bool) -> None:
    n, c, h, w = x.shape
    _, _, ho, wo = y.shape
    p = n * ho * wo
    _pool_kernel[_grid_2d(p, c, 64, 32)](
        x, y, p, c, h, w, ho, wo, *x.stride(), *y.stride(), strides[0], strides[1],
        pads[0], pads[1], low, high, off, KH=kernel[0], KW=kernel[1], AVERAGE=average,
        BP=64, BC=32)
