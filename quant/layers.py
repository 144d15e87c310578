"""A layer-wise view of a prepared graph, shared by the PTQ algorithms.

``weighted_layers`` lists every conv/linear node with its weight/bias attributes and quantizers,
the ReLU/ReLU6 it feeds (if folded into its output range) and its input value.
``collect`` runs calibration batches through the graph (float or simulated) and keeps the values
of chosen nodes, stopping as soon as the last one is computed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.fx import GraphModule, Interpreter, Node

from .fakequant import ActivationQuantizer, Mode, Quantizer, WeightQuantizer
from .graph import get_attr_tensor, module_path
from .insert import ALIAS_OPS, WEIGHTED_OPS, is_foldable_activation

aten = torch.ops.aten


@dataclass
class WeightedLayer:
    """One conv/linear node of a prepared graph."""

    node: Node
    path: str
    weight_attr: str
    bias_attr: str | None
    weight_q: WeightQuantizer | None  # None: the layer stays in float
    activation: Node | None  # the ReLU/ReLU6 folded into the output, if any
    output_q: ActivationQuantizer | None

    @property
    def is_linear(self) -> bool:
        return self.node.target is aten.linear.default

    def conv_args(self) -> tuple:
        """(stride, padding, dilation, groups) of a conv node, defaults filled in."""
        full = list(self.node.args) + [None, None, None, 1, 0, 1, 1][len(self.node.args):]
        return tuple(full[3:7])

    @property
    def groups(self) -> int:
        return 1 if self.is_linear else int(self.conv_args()[3])

    def weight(self, gm: GraphModule) -> torch.Tensor:
        return get_attr_tensor(gm, self.weight_attr)

    def bias(self, gm: GraphModule) -> torch.Tensor | None:
        return get_attr_tensor(gm, self.bias_attr) if self.bias_attr else None

    def apply(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
              *, activation: bool = True) -> torch.Tensor:
        """The layer's op on ``x`` with the given parameters (and its folded activation)."""
        if self.is_linear:
            y = F.linear(x, weight, bias)
        else:
            conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.dim()]
            y = conv(x, weight, bias, *self.conv_args())
        if activation and self.activation is not None:
            y = activation_fn(self.activation)(y)
        return y


def activation_fn(node: Node) -> Callable[[torch.Tensor], torch.Tensor]:
    if node.target in (aten.relu.default, aten.relu_.default):
        return torch.relu
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min", 0.0)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max", None)
    if node.target in (aten.relu6.default,):
        lo, hi = 0.0, 6.0
    return lambda y: torch.clamp(y, lo, hi)


def source(node: Node) -> Node:
    """Walk back through quantizer modules and aliases to the value a node really reads."""
    while True:
        if node.op == "call_module" and node.target.startswith("_quantizers."):
            node = node.args[0]
        elif node.op == "call_function" and node.target in ALIAS_OPS:
            node = node.args[0]
        else:
            return node


def _quantizer_of(gm: GraphModule, node: Node) -> Quantizer | None:
    if node.op == "call_module" and node.target.startswith("_quantizers."):
        return gm.get_submodule(node.target)
    return None


def _sole_user(node: Node) -> Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def weighted_layers(gm: GraphModule) -> list[WeightedLayer]:
    """Every conv/linear node with constant weights, in graph order."""
    layers = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in WEIGHTED_OPS:
            continue
        w_arg = node.args[1]
        w_src = source(w_arg)
        if w_src.op != "get_attr":
            continue
        b_arg = node.args[2] if len(node.args) > 2 else None
        b_src = source(b_arg) if isinstance(b_arg, Node) else None
        out = node
        user = _sole_user(node)
        activation = user if user is not None and is_foldable_activation(user) else None
        if activation is not None:
            out = activation
        q_user = _sole_user(out)
        output_q = _quantizer_of(gm, q_user) if q_user is not None else None
        layers.append(WeightedLayer(
            node=node, path=module_path(node), weight_attr=w_src.target,
            bias_attr=b_src.target if b_src is not None and b_src.op == "get_attr" else None,
            weight_q=_quantizer_of(gm, w_arg), activation=activation,
            output_q=output_q if isinstance(output_q, ActivationQuantizer) else None))
    return layers


class StopRun(Exception):
    """Raised by an interpreter once it has every value it needs."""


class _Recorder(Interpreter):
    def __init__(self, gm: GraphModule, wanted: list[Node]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.wanted = set(wanted)
        self.values: dict[Node, torch.Tensor] = {}

    def run_node(self, n: Node):
        out = super().run_node(n)
        if n in self.wanted:
            self.values[n] = out.detach()
            if len(self.values) == len(self.wanted):
                raise StopRun
        return out


@torch.no_grad()
def collect(qm, nodes: list[Node], batches: list[torch.Tensor],
            mode: Mode) -> dict[Node, torch.Tensor]:
    """Values of ``nodes`` over all ``batches`` (concatenated on the batch axis), with every
    quantizer in ``mode`` (OFF = float model, QUANT = simulation)."""
    parts: dict[Node, list[torch.Tensor]] = {n: [] for n in nodes}
    with qm.using(mode):
        for x in batches:
            rec = _Recorder(qm.graph, nodes)
            try:
                rec.run(x)
            except StopRun:
                pass
            for n in nodes:
                parts[n].append(rec.values[n])
    return {n: torch.cat(v) for n, v in parts.items()}
