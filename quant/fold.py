"""BatchNorm folding (whitepaper section 3.2), on the aten graph.

A BatchNorm after a convolution folds into it. One with no convolution before it (after a ReLU,
after an Add: common in real models) is a per-channel affine ``a * x + c``: after the Add of
two convolutions it folds into both (each scaled by ``a``, ``c`` added to one bias); otherwise
it folds into the convolution after it when that one reads nothing else and pads nothing
(padding would turn the border's ``c`` into 0), and otherwise becomes a 1x1 depthwise
convolution, an integer kernel every integer target has."""
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
    graph.eliminate_dead_code()  # the folded BNs go; those left have no conv before them
    for bn in list(graph.nodes):
        if bn.op == "call_function" and bn.target in BN_OPS and _bn_parts(bn) is not None:
            name = _fold_affine(gm, bn)
            if name is not None:
                folded.append(name)
    graph.eliminate_dead_code()
    drop_unused_attributes(gm)
    gm.recompile()
    return folded


def _affine(gm: GraphModule, bn: Node) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(a, c, attribute prefix) of an eval BN as ``a * x + c`` per channel, in float64."""
    x, gamma, beta, mean, var, eps = _bn_parts(bn)
    ref = next(n for n in (gamma, beta, mean, var) if n is not None)
    channels = get_attr_tensor(gm, ref.target).numel()

    def value(n: Node | None, default: float) -> torch.Tensor:
        if n is None:
            return torch.full((channels,), default, dtype=torch.float64)
        return get_attr_tensor(gm, n.target).detach().double()

    a = value(gamma, 1.0) / torch.sqrt(value(var, 1.0) + float(eps))
    return a, value(beta, 0.0) - value(mean, 0.0) * a, ref.target.rpartition(".")[0]


def _fold_affine(gm: GraphModule, bn: Node) -> str | None:
    """Fold a BN with no convolution before it (see the module doc); returns its name, or
    None for a BN on a tensor that is not 4-D (left as it is)."""
    x = bn.args[0]
    if x.meta["val"].dim() != 4:
        return None
    a, c, prefix = _affine(gm, bn)
    out = _bn_output_users(bn)
    branches = _linear_branches(x)
    if branches:  # BN(conv1(u) + conv2(v)) = conv1'(u) + conv2'(v): both scaled, c in one bias
        for i, conv in enumerate(branches):
            _scale_outputs(gm, conv, a)
            if i == 0:
                _add_to_bias(gm, conv, c, f"{prefix}.folded_bias")
        out.replace_all_uses_with(x)
        return bn.name
    users = list(out.users)
    if len(users) == 1 and _folds_forward(users[0], out):
        _fold_into_conv(gm, users[0], a, c, f"{prefix}.folded_bias")
        users[0].args = (x, *users[0].args[1:])
        return bn.name
    dtype = x.meta["val"].dtype
    set_attr_tensor(gm, f"{prefix}.affine_weight", a.reshape(-1, 1, 1, 1).to(dtype))
    set_attr_tensor(gm, f"{prefix}.affine_bias", c.to(dtype))
    with gm.graph.inserting_before(bn):
        w = gm.graph.get_attr(f"{prefix}.affine_weight")
        b = gm.graph.get_attr(f"{prefix}.affine_bias")
        dw = gm.graph.call_function(aten.conv2d.default,
                                    (x, w, b, [1, 1], [0, 0], [1, 1], a.numel()))
    dw.meta = dict(out.meta)
    dw.meta["nn_module_stack"] = bn.meta.get("nn_module_stack", {})
    out.replace_all_uses_with(dw)
    return bn.name


def _linear_branches(value: Node) -> list[Node]:
    """The two convolutions (with their own weights, read by the Add alone) whose sum is
    ``value``, or [] (the BN then cannot fold backwards through it)."""
    if value.op != "call_function" or value.target is not aten.add.Tensor or \
            len(value.users) != 1 or len(value.args) != 2 or value.kwargs.get("alpha", 1) != 1:
        return []
    branches = list(value.args)
    ok = all(isinstance(b, Node) and b.op == "call_function" and b.target in CONV_OPS
             and len(b.users) == 1 and b.args[1].op == "get_attr" and len(b.args[1].users) == 1
             and (len(b.args) < 3 or b.args[2] is None or
                  (b.args[2].op == "get_attr" and len(b.args[2].users) == 1))
             for b in branches)
    return branches if ok and branches[0] is not branches[1] else []


def _add_to_bias(gm: GraphModule, conv: Node, c: torch.Tensor, bias_target: str) -> None:
    """``b[o] += c[o]`` (a zero bias named ``bias_target`` is added first if there is none)."""
    args = list(conv.args) + [None] * (3 - len(conv.args))
    weight = get_attr_tensor(gm, args[1].target)
    if args[2] is None:
        set_attr_tensor(gm, bias_target, torch.zeros(weight.shape[0], dtype=weight.dtype))
        with gm.graph.inserting_before(conv):
            args[2] = gm.graph.get_attr(bias_target)
        conv.args = tuple(args)
    b = get_attr_tensor(gm, args[2].target)
    set_attr_tensor(gm, args[2].target, (b.detach().double() + c).to(b.dtype))


def _folds_forward(conv: Node, value: Node) -> bool:
    """A 2-D convolution that reads ``value`` alone, owns its weights and pads nothing."""
    if conv.op != "call_function" or conv.target is not aten.conv2d.default or \
            conv.args[0] is not value or conv.args[1].op != "get_attr" or \
            len(conv.args[1].users) != 1:
        return False
    bias = conv.args[2] if len(conv.args) > 2 else None
    if bias is not None and (bias.op != "get_attr" or len(bias.users) != 1):
        return False
    padding = conv.args[4] if len(conv.args) > 4 else [0, 0]
    return all(int(p) == 0 for p in padding)


def _fold_into_conv(gm: GraphModule, conv: Node, a: torch.Tensor, c: torch.Tensor,
                    bias_target: str) -> None:
    """conv(a * x + c) = conv'(x): ``w'[o, j] = w[o, j] * a[in(o, j)]`` and
    ``b'[o] = b[o] + sum_j,k w[o, j, k] * c[in(o, j)]`` (grouped: in(o, j) is in o's group)."""
    w_node = conv.args[1]
    weight = get_attr_tensor(gm, w_node.target).detach().double()
    dtype = get_attr_tensor(gm, w_node.target).dtype
    groups = int(conv.args[6]) if len(conv.args) > 6 else 1
    per_out = weight.shape[0] // groups
    scale = a.reshape(groups, -1).repeat_interleave(per_out, 0)[:, :, None, None]
    shift = c.reshape(groups, -1).repeat_interleave(per_out, 0)[:, :, None, None]
    set_attr_tensor(gm, w_node.target, (weight * scale).to(dtype))
    _add_to_bias(gm, conv, (weight * shift).sum((1, 2, 3)), bias_target)


def drop_unused_attributes(gm: GraphModule) -> None:
    """Delete parameters/buffers no get_attr node reads any more (the folded BN statistics)."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)


def fold_scales(gm: GraphModule) -> list[str]:
    """Fold a per-channel constant scale (ConvNeXt's layer scale ``gamma * f(x)``, HorNet's
    ``dwconv(x) * s``) into the
    convolution or linear layer that computes ``f(x)``, when that layer's output is used by the
    product alone: ``w' = gamma[c] * w[c]``, ``b' = gamma[c] * b[c]`` (exact in float64, and no
    quantized constant product is left). Returns the folded product nodes' names."""
    folded = []
    for mul in list(gm.graph.nodes):
        if mul.op != "call_function" or mul.target is not aten.mul.Tensor:
            continue
        layer, scale = mul.args
        if not _is_constant(scale):
            layer, scale = scale, layer
        if not (isinstance(layer, Node) and _is_constant(scale)
                and layer.op == "call_function" and layer.target in CONV_OPS | LINEAR_OPS
                and len(layer.users) == 1 and layer.args[1].op == "get_attr"
                and len(layer.args[1].users) == 1):
            continue
        gamma = torch.tensor(float(scale), dtype=torch.float64) if not isinstance(scale, Node) \
            else get_attr_tensor(gm, scale.target).detach().double()
        channels = get_attr_tensor(gm, layer.args[1].target).shape[0]
        axis = 1 if layer.target in CONV_OPS else layer.meta["val"].dim() - 1
        per_channel = _along(gamma, layer.meta["val"].dim(), axis, channels)
        if per_channel is None:
            continue
        bias = layer.args[2] if len(layer.args) > 2 else None
        if bias is not None and (bias.op != "get_attr" or len(bias.users) != 1):
            continue
        _scale_outputs(gm, layer, per_channel)
        mul.replace_all_uses_with(layer)
        folded.append(mul.name)
    gm.graph.eliminate_dead_code()
    drop_unused_attributes(gm)
    gm.recompile()
    return folded


LINEAR_OPS = {aten.linear.default}


def _is_constant(value) -> bool:
    """A parameter/buffer, or a plain number."""
    if isinstance(value, Node):
        return value.op == "get_attr"
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _along(gamma: torch.Tensor, rank: int, axis: int, channels: int) -> torch.Tensor | None:
    """``gamma`` as one factor per channel, if it broadcasts along ``axis`` only."""
    if gamma.dim() > rank:
        return None
    shape = [1] * (rank - gamma.dim()) + list(gamma.shape)
    if gamma.numel() == 1:
        return gamma.reshape(1).expand(channels).clone()
    if shape[axis] != channels or any(s != 1 for i, s in enumerate(shape) if i != axis):
        return None
    return gamma.reshape(channels)


def _scale_outputs(gm: GraphModule, layer: Node, factor: torch.Tensor) -> None:
    w_node = layer.args[1]
    weight = get_attr_tensor(gm, w_node.target)
    shape = [-1] + [1] * (weight.dim() - 1)
    set_attr_tensor(gm, w_node.target,
                    (weight.detach().double() * factor.reshape(shape)).to(weight.dtype))
    bias = layer.args[2] if len(layer.args) > 2 else None
    if bias is not None:
        b = get_attr_tensor(gm, bias.target)
        set_attr_tensor(gm, bias.target, (b.detach().double() * factor).to(b.dtype))
