"""P3D's (2+1)D rewrite on the captured aten graph: every 5-D convolution (and mean over time
and space) as the 2-D ops that the lowering emits for the integer consumers
(``exporters/conv3d_rewrite.py``, whose doc explains the geometry). Both share ``plan`` and
``frame_rows`` below, so the ONNX a user asks for with ``conv3d_as_2d`` (cpu-ort, cpu-openvino,
dsp-qnn-htp) holds the same 2-D form that LiteRT, the integer reference and the HLS project run:
the 5-D and rewritten forms can be compared on one runtime.

BatchNorm is folded first (a BN after a Conv3d must meet the convolution, not the reshapes that
follow its 2-D form). The rewritten graph is captured again (``capture``), which proves it
computes the same outputs as the 5-D graph in float and gives every new node its shape."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.fx import GraphModule, Node

from convdeploy.errors import ConvdeployError

from .fold import drop_unused_attributes, fold_batchnorm
from .graph import capture, get_attr_tensor, set_attr_tensor
from .insert import CLAMP_OPS, RELU_OPS

aten = torch.ops.aten


class FrameRows(NamedTuple):
    """A (1, kh, kw) convolution's frames stacked along rows: each frame padded to ``padded``
    rows (its own top and bottom padding, rounded up to a multiple of the row stride), ``rows``
    output rows kept per frame of the ``per_frame`` its stride gives, ``produced`` output rows
    computed in all (the last frame's straddling rows are not)."""

    padded: int
    rows: int
    per_frame: int
    produced: int


def frame_rows(frames: int, height: int, top: int, bottom: int, span: int,
               stride: int) -> FrameRows:
    rows = height + top + bottom
    padded = -(-rows // stride) * stride
    return FrameRows(padded, (rows - span) // stride + 1, padded // stride,
                     (frames * padded - span) // stride + 1)


def plan(kernel: tuple[int, int, int], strides: tuple[int, int, int],
         pads: tuple[int, ...], groups: int) -> str | None:
    """Which 2-D form a 5-D convolution takes: ``spatial`` (1, k, k), ``temporal`` (k, 1, 1),
    ``taps`` (a full kernel as a sum over temporal taps) or None (a grouped full kernel: no
    exact 2-D form). ``pads``: ONNX order (t, h, w begins, then ends)."""
    kt, kh, kw = kernel
    if kt == 1 and strides[0] == 1 and pads[0] == pads[3] == 0:
        return "spatial"
    if kh == kw == 1 and strides[1:] == (1, 1) and not any(pads[i] for i in (1, 2, 4, 5)):
        return "temporal"
    return "taps" if groups == 1 else None


def _triple(value, default: int) -> tuple[int, int, int]:
    value = default if value is None else value
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(int(v) for v in (value * 3 if len(value) == 1 else value))


class _Builder:
    """Inserts aten calls before ``anchor`` (the op being replaced)."""

    def __init__(self, gm: GraphModule, anchor: Node):
        self.gm, self.graph, self.anchor = gm, gm.graph, anchor

    def call(self, target, *args) -> Node:
        with self.graph.inserting_before(self.anchor):
            return self.graph.call_function(target, tuple(args))

    def constant(self, name: str, value: torch.Tensor) -> Node:
        set_attr_tensor(self.gm, name, value.contiguous())
        with self.graph.inserting_before(self.anchor):
            return self.graph.get_attr(name)

    def reshape(self, x: Node, sample_shape: tuple[int, ...]) -> Node:
        return self.call(aten.reshape.default, x, [-1, *sample_shape])


def _spatial(b: _Builder, x: Node, weight: torch.Tensor, bias: Node | None, dims, strides,
             pads, dilations, groups: int, name: str) -> tuple[Node, Node]:
    c, t, h, w = dims
    sh, sw = strides
    ph, pw = pads
    dh, dw = dilations
    o, span = weight.shape[0], (weight.shape[2] - 1) * dh + 1
    geo = frame_rows(t, h, ph, ph, span, sh)
    wo = (w + 2 * pw - (weight.shape[3] - 1) * dw - 1) // sw + 1
    if geo.padded != h:
        x = b.call(aten.constant_pad_nd.default, x, [0, 0, ph, geo.padded - h - ph])
    x = b.reshape(x, (c, t * geo.padded, w))
    y = conv = b.call(aten.conv2d.default, x, b.constant(f"{name}_2d_weight", weight), bias,
                      [sh, sw], [0, pw], [dh, dw], groups)
    if geo.produced != t * geo.per_frame:
        y = b.call(aten.constant_pad_nd.default, y, [0, 0, 0, t * geo.per_frame - geo.produced])
    y = b.reshape(y, (o, t, geo.per_frame, wo))
    if geo.per_frame != geo.rows:
        y = b.call(aten.slice.Tensor, y, 3, 0, geo.rows, 1)
    return conv, y


def _rewrite_conv(gm: GraphModule, node: Node) -> None:
    args = list(node.args) + [None] * (7 - len(node.args))
    x, w_node, bias = args[0], args[1], args[2]
    name = node.name
    if w_node.op != "get_attr":
        raise ConvdeployError(f"Conv3d {name}: its weight is computed in the graph, so it has "
                              "no fixed 2-D form", fix="keep the 5-D form (no --conv3d-as-2d)")
    weight = get_attr_tensor(gm, w_node.target).detach()
    strides, dilations = _triple(args[3], 1), _triple(args[5], 1)
    padding = _triple(args[4], 0)
    groups = int(args[6] or 1)
    _, c, t, h, w = (int(d) for d in x.meta["val"].shape)
    o, _, kt, kh, kw = weight.shape
    form = plan((kt, kh, kw), strides, (*padding, *padding), groups)
    b = _Builder(gm, node)
    if form == "spatial":
        conv, y = _spatial(b, x, weight[:, :, 0], bias, (c, t, h, w), strides[1:],
                           padding[1:], dilations[1:], groups, name)
    elif form == "temporal":
        st, dt, pt = strides[0], dilations[0], padding[0]
        t_out = (t + 2 * pt - dt * (kt - 1) - 1) // st + 1
        conv = b.call(aten.conv2d.default, b.reshape(x, (c, t, h * w)),
                      b.constant(f"{name}_2d_weight", weight[..., 0]), bias, [st, 1], [pt, 0],
                      [dt, 1], groups)
        y = b.reshape(conv, (o, t_out, h, w))
    elif form == "taps":
        st, dt, pt = strides[0], dilations[0], padding[0]
        t_out = (t + 2 * pt - dt * (kt - 1) - 1) // st + 1
        if pt:
            x = b.call(aten.constant_pad_nd.default, x, [0, 0, 0, 0, pt, pt])
        taps = [b.call(aten.slice.Tensor, x, 2, k * dt, k * dt + (t_out - 1) * st + 1, st)
                for k in range(kt)]
        conv, y = _spatial(b, b.call(aten.cat.default, taps, 1),
                           weight.transpose(1, 2).reshape(o, kt * c, kh, kw), bias,
                           (kt * c, t_out, h, w), strides[1:], padding[1:], dilations[1:], 1,
                           name)
    else:
        raise ConvdeployError(
            f"Conv3d {name}: a grouped {kt}x{kh}x{kw} kernel has no exact 2-D form",
            fix="factor it into (1,k,k) and (k,1,1) convolutions (P3D), or keep the 5-D form")
    act = _sole_activation(node)
    y.meta["val"] = (act or node).meta["val"]  # the shape a later 5-D op reads
    if act is not None:  # onto the 2-D convolution, where every integer consumer fuses it
        with gm.graph.inserting_after(conv):
            fused = gm.graph.call_function(act.target, (conv, *act.args[1:]), dict(act.kwargs))
        conv.replace_all_uses_with(fused, delete_user_cb=lambda user: user is not fused)
        act.replace_all_uses_with(y)
        gm.graph.erase_node(act)
    node.replace_all_uses_with(y)
    gm.graph.erase_node(node)


def _sole_activation(node: Node) -> Node | None:
    """The ReLU/ReLU6/clamp that alone reads ``node``. It commutes with the pads, reshapes and
    slices after the 2-D convolution: they move values, and the rows a pad adds are dropped."""
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_function" and \
            users[0].target in (*RELU_OPS, *CLAMP_OPS):
        return users[0]
    return None


def _rewrite_mean(gm: GraphModule, node: Node) -> None:
    x = node.args[0]
    _, c, t, h, w = (int(d) for d in x.meta["val"].shape)
    b = _Builder(gm, node)
    y = b.call(aten.mean.dim, b.reshape(x, (c, t * h, w)), [-2, -1], True)
    y = b.reshape(y, tuple(int(d) for d in node.meta["val"].shape[1:]))
    y.meta["val"] = node.meta["val"]
    node.replace_all_uses_with(y)
    gm.graph.erase_node(node)


def _is_thw_mean(node: Node) -> bool:
    if node.op != "call_function" or node.target is not aten.mean.dim:
        return False
    val = node.args[0].meta.get("val") if isinstance(node.args[0], Node) else None
    return val is not None and val.dim() == 5 and \
        sorted(d % 5 for d in node.args[1]) == [2, 3, 4]


class TwoD(NamedTuple):
    graph: GraphModule
    convs: list[str]  # the rewritten Conv3d nodes (empty: the graph is unchanged)
    folded_batchnorms: list[str]  # folded before the rewrite (``prepare`` finds none left)


def conv3d_as_2d(gm: GraphModule, example: torch.Tensor) -> TwoD:
    """The captured ``gm`` with every Conv3d (and mean over T, H, W) in its 2-D form, captured
    again."""
    folded = fold_batchnorm(gm)
    rewritten = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is aten.conv3d.padding:
            raise ConvdeployError(f"Conv3d {node.name}: padding given as a string",
                                  fix="give the padding as numbers, or keep the 5-D form")
        if node.target is aten.conv3d.default:
            rewritten.append(node.name)
            _rewrite_conv(gm, node)
        elif _is_thw_mean(node):
            _rewrite_mean(gm, node)
    if not rewritten:
        return TwoD(gm, [], folded)
    gm.graph.eliminate_dead_code()
    drop_unused_attributes(gm)
    gm.graph.lint()
    gm.recompile()
    # a plain fx module (the exported one refuses eval()), captured again with fresh shapes
    return TwoD(capture(GraphModule(gm, gm.graph), example), rewritten, folded)
