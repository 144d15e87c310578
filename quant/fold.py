"""BatchNorm folding into the preceding convolution (whitepaper section 3.2), on the aten graph."""
from __future__ import annotations

import torch
from torch.fx import GraphModule, Node

from .graph import get_attr_tensor, set_attr_tensor

aten = torch.ops.aten
CONV_OPS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default,
            aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding}
# Eval-mode batch norm as torch.export writes it (training IR) or after decompositions.
BN_OPS = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}


def _bn_parts(node: Node) -> tuple[Node, ...] | None:
    """(input, weight, bias, mean, var, eps) of an eval-mode BN node, or None."""
    a = node.args
    if node.target is aten.batch_norm.default:
        if a[5]:  # training=True: statistics are not frozen, nothing to fold
            return None
        return a[0], a[1], a[2], a[3], a[4], a[7]
    return a[0], a[1], a[2], a[3], a[4], a[6]


def _bn_output_users(node: Node) -> Node:
    """The value that carries the BN result (the node itself, or getitem 0 of a tuple op)."""
    if node.target is aten.batch_norm.default:
        return node
    return next(u for u in node.users if u.target.__name__ == "getitem" and u.args[1] == 0)


def fold_batchnorm(gm: GraphModule) -> list[str]:
    """Fold every eval-mode BatchNorm that directly follows a convolution used only by it.

    ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``, computed in
    float64. Returns the folded BN node names. BatchNorms that cannot be folded stay in the graph
    (they run in float and their outputs are quantized like any other op).
    """
    folded: list[str] = []
    graph = gm.graph
    for bn in list(graph.nodes):
        if bn.op != "call_function" or bn.target not in BN_OPS:
            continue
        parts = _bn_parts(bn)
        if parts is None:
            continue
        conv, gamma, beta, mean, var, eps = parts
        if not (conv.op == "call_function" and conv.target in CONV_OPS and len(conv.users) == 1):
            continue
        w_node = conv.args[1]
        if w_node.op != "get_attr" or len(w_node.users) != 1:
            continue
        args = list(conv.args) + [None] * (3 - len(conv.args))  # make room for the bias
        b_node = args[2]
        if b_node is not None and (b_node.op != "get_attr" or len(b_node.users) != 1):
            continue

        def value(n: Node | None, default: float) -> torch.Tensor:
            if n is None:
                return torch.full((out_ch,), default, dtype=torch.float64)
            return get_attr_tensor(gm, n.target).detach().double()

        weight = get_attr_tensor(gm, w_node.target).detach().double()
        out_ch = weight.shape[0]
        inv_std = value(gamma, 1.0) / torch.sqrt(value(var, 1.0) + float(eps))
        new_w = weight * inv_std.reshape([-1] + [1] * (weight.dim() - 1))
        new_b = (value(b_node, 0.0) - value(mean, 0.0)) * inv_std + value(beta, 0.0)
        dtype = get_attr_tensor(gm, w_node.target).dtype
        set_attr_tensor(gm, w_node.target, new_w.to(dtype))
        bias_target = w_node.target.rpartition(".")[0] + ".bias" if "." in w_node.target else "bias"
        if b_node is None:
            set_attr_tensor(gm, bias_target, new_b.to(dtype))
            with graph.inserting_before(conv):
                b_node = graph.get_attr(bias_target)
        else:
            set_attr_tensor(gm, b_node.target, new_b.to(dtype))
        args[2] = b_node
        conv.args = tuple(args)
        _bn_output_users(bn).replace_all_uses_with(conv)
        folded.append(bn.name)
    graph.eliminate_dead_code()
    _drop_unused_attributes(gm)
    gm.recompile()
    return folded


def _drop_unused_attributes(gm: GraphModule) -> None:
    """Delete parameters/buffers no get_attr node reads any more (the folded BN statistics)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
