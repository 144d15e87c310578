"""The (2+1)D rewrite: 5-D convolutions and means as exact 2-D ops, for the integer consumers
(integer reference, TFLite writer, HLS, GPU) that have no CONV_3D (LiteRT has no int8 CONV_3D).

Every rewritten op keeps the batch as its first dimension (the lowering's contract) and the
quantization of the tensors it replaces; the inserted pads, reshapes and slices move codes
without arithmetic, so the rewritten graph computes every output code the 5-D op would:

- a (1, kh, kw) convolution on (N, C, T, H, W): each frame padded to ``Hp`` rows (its own top
  and bottom padding, rounded up to a multiple of the row stride), the frames stacked into
  (N, C, T * Hp, W), one 2-D convolution without vertical padding, and each frame's first
  ``Ho`` output rows kept (the rows that straddle two frames are computed and dropped: at most
  ``(kh - 1) * dh`` of every ``Hp``);
- a (kt, 1, 1) convolution: (N, C, T, H * W), a (kt, 1) 2-D convolution, back to
  (N, C', T', H, W) (pure reshapes in both layouts);
- a mean over (T, H, W): (N, C, T * H, W), the spatial MEAN (the count is T * H * W either way).

- a full (kt, kh, kw) convolution as a sum over its temporal taps: for each output frame the kt
  input frames it reads are stacked along channels (PAD in time, one STRIDED_SLICE per tap,
  CONCATENATION), then one (1, kh, kw) convolution as above with the weights reordered to
  (O, kt * C, kh, kw): the same sum of products, requantized once (kt times the input memory).

The same rewrite on the torch graph (``quant/conv3d_form.py``, which owns the shared geometry)
gives the ONNX runtimes the 2-D form too (``--conv3d-as-2d``), to compare the forms on one runtime.

A grouped full 3-D convolution is refused by name: factor it into (2+1)D (P3D's form) or keep it
on the targets that run 5-D QDQ (cpu-ort, cpu-openvino, dsp-qnn-htp).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from convdeploy.quant.conv3d_form import frame_rows, plan

from .opgraph import Activation, Op, OpKind


def _new(lowerer: Any, name: str, like: str) -> str:
    """A new intermediate tensor on the quantization of ``like`` (float when it is float)."""
    if like in lowerer.quant:
        lowerer.quant[name] = lowerer.quant[like]
    return name


def conv3d(lowerer: Any, node: Any, src: str, out: str, act: Activation, weight: np.ndarray,
           scale, bias, attrs: dict, in_shape: tuple) -> None:
    """Append the 2-D ops of a 5-D convolution ``node`` (ONNX attributes ``attrs``)."""
    from .lowering import LoweringError

    kt, kh, kw = weight.shape[2:]
    st, sh, sw = attrs.get("strides", (1, 1, 1))
    dt, dh, dw = attrs.get("dilations", (1, 1, 1))
    pads = tuple(attrs.get("pads", (0,) * 6))
    group = attrs.get("group", 1)
    if any(not isinstance(d, int) for d in in_shape[1:]):
        raise LoweringError(f"{node.name}: a 5-D convolution needs fixed (C, T, H, W)")
    _, c, t, h, w = in_shape
    o = weight.shape[0]
    form = plan((kt, kh, kw), (st, sh, sw), pads, group)
    if form == "spatial":
        _spatial(lowerer, node, src, out, act, weight[:, :, 0], scale, bias,
                 (sh, sw), (dh, dw), (pads[1], pads[2], pads[4], pads[5]), group, (c, t, h, w), o)
    elif form == "temporal":
        tmp_in = _new(lowerer, f"{out}.time_rows", src)
        lowerer.ops.append(Op(OpKind.RESHAPE, (src,), tmp_in, f"{node.name}.to_time_rows",
                              attrs={"sample_shape": (c, t, h * w)}))
        t_out = (t + pads[0] + pads[3] - dt * (kt - 1) - 1) // st + 1
        tmp_out = _new(lowerer, f"{out}.conv2d", out)
        lowerer.ops.append(Op(OpKind.CONV, (tmp_in,), tmp_out, node.name, act, weight[..., 0],
                              scale, bias, {"strides": (st, 1), "pads": (pads[0], 0, pads[3], 0),
                                            "dilations": (dt, 1), "groups": group,
                                            "rewritten_from": "Conv3d (kt,1,1)"}))
        lowerer.ops.append(Op(OpKind.RESHAPE, (tmp_out,), out, f"{node.name}.from_time_rows",
                              attrs={"sample_shape": (o, t_out, h, w)}))
    elif form == "taps":
        taps = _temporal_taps(lowerer, node, src, out, weight, (c, t, h, w), kt, st, dt,
                              (pads[0], pads[3]))
        _spatial(lowerer, node, taps, out, act, weight.transpose(0, 2, 1, 3, 4).reshape(
            o, kt * c, kh, kw), scale, bias, (sh, sw), (dh, dw),
            (pads[1], pads[2], pads[4], pads[5]), 1,
            (kt * c, (t + pads[0] + pads[3] - dt * (kt - 1) - 1) // st + 1, h, w), o,
            form="Conv3d (kt,k,k) as temporal taps")
    else:
        raise LoweringError(
            f"{node.name}: a grouped {kt}x{kh}x{kw} Conv3d has no exact 2-D form here: factor "
            "it into (1,k,k) and (k,1,1) convolutions (P3D), or run the 5-D model on cpu-ort, "
            "cpu-openvino or dsp-qnn-htp")


def _temporal_taps(lowerer, node, src, out, weight, dims, kt, st, dt, time_pads) -> str:
    """(N, C, T, H, W) -> (N, kt * C, T', H, W): for each output frame, the kt input frames
    its kernel reads, stacked along channels (tap-major), so that one (1, kh, kw) convolution
    sums over every (tap, channel, row, column): the 3-D sum, requantized once."""
    c, t, h, w = dims
    begin, end = time_pads
    x = src
    if begin or end:
        x = _new(lowerer, f"{out}.time_padded", src)
        lowerer.ops.append(Op(OpKind.PAD, (src,), x, f"{node.name}.pad_time",
                              attrs={"pads": [0, 0, begin, 0, 0, 0, 0, end, 0, 0]}))
    t_out = (t + begin + end - dt * (kt - 1) - 1) // st + 1
    taps = []
    for tap in range(kt):
        frames = _new(lowerer, f"{out}.tap{tap}", src)
        lowerer.ops.append(Op(OpKind.STRIDED_SLICE, (x,), frames, f"{node.name}.tap{tap}",
                              attrs={"starts": [tap * dt], "ends": [tap * dt + (t_out - 1) * st
                                                                    + 1],
                                     "axes": [2], "steps": [st]}))
        taps.append(frames)
    stacked = _new(lowerer, f"{out}.taps", src)
    lowerer.ops.append(Op(OpKind.CONCATENATION, tuple(taps), stacked, f"{node.name}.stack_taps",
                          attrs={"axis": 1}))
    return stacked


def _spatial(lowerer, node, src, out, act, weight, scale, bias, strides, dilations, pads,
             group, dims, o, form: str = "Conv3d (1,k,k)") -> None:
    c, t, h, w = dims
    sh, sw = strides
    dh, dw = dilations
    top, left, bottom, right = pads
    span = (weight.shape[2] - 1) * dh + 1
    hp, ho, per_frame, produced = frame_rows(t, h, top, bottom, span, sh)
    wo = (w + left + right - (weight.shape[3] - 1) * dw - 1) // sw + 1
    x = src
    if hp != h:
        x = _new(lowerer, f"{out}.frames_padded", src)
        lowerer.ops.append(Op(OpKind.PAD, (src,), x, f"{node.name}.pad_frames",
                              attrs={"pads": [0, 0, 0, top, 0, 0, 0, 0, hp - h - top, 0]}))
    stacked = _new(lowerer, f"{out}.frames_stacked", src)
    lowerer.ops.append(Op(OpKind.RESHAPE, (x,), stacked, f"{node.name}.stack_frames",
                          attrs={"sample_shape": (c, t * hp, w)}))
    conv = _new(lowerer, f"{out}.conv2d", out)
    lowerer.ops.append(Op(OpKind.CONV, (stacked,), conv, node.name, act, weight, scale, bias,
                          {"strides": (sh, sw), "pads": (0, left, 0, right),
                           "dilations": (dh, dw), "groups": group,
                           "rewritten_from": form}))
    y = conv
    if produced != t * per_frame:  # the last frame's straddling rows were never computed
        y = _new(lowerer, f"{out}.rows_padded", out)
        lowerer.ops.append(Op(OpKind.PAD, (conv,), y, f"{node.name}.pad_rows",
                              attrs={"pads": [0, 0, 0, 0, 0, 0, t * per_frame - produced, 0]}))
    framed = out if per_frame == ho else _new(lowerer, f"{out}.framed", out)
    lowerer.ops.append(Op(OpKind.RESHAPE, (y,), framed, f"{node.name}.unstack_frames",
                          attrs={"sample_shape": (o, t, per_frame, wo)}))
    if framed != out:
        lowerer.ops.append(Op(OpKind.STRIDED_SLICE, (framed,), out, f"{node.name}.frame_rows",
                              attrs={"starts": [0], "ends": [ho], "axes": [3], "steps": [1]}))


def mean_thw(lowerer: Any, node: Any, src: str, out: str, in_shape: tuple,
             out_sample: tuple) -> None:
    """MEAN over (T, H, W) of (N, C, T, H, W) as the spatial MEAN of (N, C, T * H, W)."""
    _, c, t, h, w = in_shape
    flat = _new(lowerer, f"{out}.thw_rows", src)
    lowerer.ops.append(Op(OpKind.RESHAPE, (src,), flat, f"{node.name}.stack_frames",
                          attrs={"sample_shape": (c, t * h, w)}))
    pooled = _new(lowerer, f"{out}.mean2d", out)
    lowerer.ops.append(Op(OpKind.MEAN, (flat,), pooled, node.name))
    lowerer.ops.append(Op(OpKind.RESHAPE, (pooled,), out, f"{node.name}.reshape",
                          attrs={"sample_shape": tuple(out_sample)}))
