"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization", section 4.1).

For two consecutive layers ``A -> act -> B`` with a positively homogeneous activation, scaling
A's output channel ``i`` by ``1/s_i`` and B's input channel ``i`` by ``s_i`` leaves the function
unchanged. ``s_i = sqrt(r1_i / r2_i)`` (r = per-channel weight ranges) gives both layers the same
range per channel, so per-tensor (and 4-bit) weight grids lose far less precision. Pairs are
equalized repeatedly until the scales settle, which also handles conv -> depthwise -> conv
chains. ReLU is homogeneous; ReLU6 is not (its clip would move to ``6 / s_i``), so, as in the
paper, an equalized ReLU6 becomes a ReLU: the number replaced is returned so reports can say so.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .graph import get_attr_tensor, set_attr_tensor
from .layers import WeightedLayer, source, weighted_layers

aten = torch.ops.aten


@dataclass
class CLEResult:
    pairs: int
    relu6_replaced: int
    max_scale_change: float  # of the last iteration: how far from converged


def _pairs(gm) -> list[tuple[WeightedLayer, WeightedLayer]]:
    layers = weighted_layers(gm)
    by_out = {(l.activation or l.node): l for l in layers}
    pairs = []
    for b in layers:
        a = by_out.get(source(b.node.args[0]))
        if a is None or a.weight_q is None or b.weight_q is None:
            continue
        if len(a.node.users) != 1 or (a.activation is not None and len(a.activation.users) != 1):
            continue
        q_node = next(iter((a.activation or a.node).users))
        if q_node is not b.node.args[0] or len(q_node.users) != 1:
            continue  # the value also feeds another op (a residual add): scaling would leak
        w_a, w_b = a.weight(gm), b.weight(gm)
        depthwise = b.groups > 1 and b.groups == w_b.shape[0] and w_b.shape[1] == 1
        if b.groups > 1 and not depthwise:
            continue
        if a.bias_attr and len(source(a.node.args[2]).users) > 1 or w_a.shape[0] != (
                w_b.shape[0] if depthwise else w_b.shape[1]):
            continue
        pairs.append((a, b))
    return pairs


def _replace_relu6(node) -> bool:
    if node is None or node.target in (aten.relu.default, aten.relu_.default):
        return False
    node.target = aten.relu.default
    node.args = (node.args[0],)
    node.kwargs = {}
    return True


@torch.no_grad()
def equalize(qm, iterations: int = 20) -> CLEResult:
    """Equalize every eligible pair of ``qm``'s graph in place (before calibration), then reset
    the weight quantizers' scales from the new weights."""
    gm = qm.graph
    pairs = _pairs(gm)
    replaced = sum(_replace_relu6(a.activation) for a, _ in pairs)
    change = 0.0
    for _ in range(iterations):
        change = 0.0
        for a, b in pairs:
            w_a, w_b = a.weight(gm).double(), b.weight(gm).double()
            depthwise = b.groups > 1
            r1 = w_a.abs().reshape(w_a.shape[0], -1).amax(1)
            if depthwise:
                r2 = w_b.abs().reshape(w_b.shape[0], -1).amax(1)
            else:
                r2 = w_b.abs().transpose(0, 1).reshape(w_b.shape[1], -1).amax(1)
            s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-30)),
                            torch.ones_like(r1))
            change = max(change, float((s - 1).abs().max()))
            shape_a = [-1] + [1] * (w_a.dim() - 1)
            set_attr_tensor(gm, a.weight_attr, (w_a / s.reshape(shape_a)).float())
            if a.bias_attr:
                b_a = get_attr_tensor(gm, a.bias_attr).double()
                set_attr_tensor(gm, a.bias_attr, (b_a / s).float())
            shape_b = [-1] + [1] * (w_b.dim() - 1) if depthwise else \
                [1, -1] + [1] * (w_b.dim() - 2)
            set_attr_tensor(gm, b.weight_attr, (w_b * s.reshape(shape_b)).float())
    for layer in weighted_layers(gm):
        if layer.weight_q is not None:
            layer.weight_q.init_from(layer.weight(gm))
    gm.recompile()
    return CLEResult(len(pairs), replaced, change)
