"""Where quantizers stand: a pass over the aten graph that inserts them.

Rules (whitepaper + Jacob et al. 2018, as runtimes execute QDQ graphs):
- the model input, and the output of every op that computes new values (conv, linear, add, mul,
  pooling by averaging, concat, activations...) get their own activation quantizer;
- a ReLU/ReLU6 that is the sole user of such an op is folded into its output range: the
  quantizer stands after the activation, so the runtime can drop it;
- a conv/linear weight gets a symmetric weight quantizer and its bias an int32 quantizer with
  scale ``s_in * s_w``;
- ops that only move values (slice, pad with 0, max-pool, reshape, ReLU on a quantized input),
  and average pooling, reuse their input's quantizer: the value stays on the same grid, and
  the exported graph keeps Q/DQ around them so integer runtimes do not fall back to float;
- aliases (dropout in eval, clone, contiguous) are transparent.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.fx import GraphModule, Node

from convdeploy.errors import ConvdeployError

from .graph import get_attr_tensor, module_path
from .fakequant import ActivationQuantizer, BiasQuantizer, FixedRange, Quantizer, \
    WeightQuantizer
from .fold import CONV_OPS
from .scheme import QuantScheme, TensorQuant

aten = torch.ops.aten
WEIGHTED_OPS = CONV_OPS | {aten.linear.default}
RELU_OPS = {aten.relu.default, aten.relu_.default}
CLAMP_OPS = {aten.hardtanh.default, aten.hardtanh_.default, aten.relu6.default,
             aten.clamp.default, aten.clamp_.default}
PASSTHROUGH_OPS = {
    aten.slice.Tensor, aten.select.int, aten.max_pool1d.default, aten.max_pool2d.default,
    aten.max_pool3d.default, aten.flatten.using_ints, aten.view.default, aten.reshape.default,
    aten._unsafe_view.default, aten.permute.default, aten.transpose.int, aten.squeeze.dim,
    aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default, aten.expand.default,
    aten.upsample_nearest2d.vec, aten.pixel_shuffle.default,
    # an average stays inside its input's range, and TFLite's int8 AVERAGE_POOL_2D computes on
    # the input's grid (one quantization on both sides)
    aten.avg_pool2d.default,
} | RELU_OPS
PAD_OPS = {aten.pad.default, aten.constant_pad_nd.default}
SPLIT_OPS = {aten.split_with_sizes.default, aten.split.Tensor, aten.chunk.default,
             aten.unbind.int}
ALIAS_OPS = {aten.dropout.default, aten.feature_dropout.default, aten.clone.default,
             aten.contiguous.default, aten.alias.default, aten.detach.default,
             aten.lift_fresh_copy.default}

# outputs whose 8-bit encoding the integer kernel fixes (TFLite's int8 LOGISTIC and TANH): the
# Encodings carry these numbers, so no exporter re-scales them
FIXED_OUTPUTS = {
    aten.sigmoid.default: FixedRange(0.0, 1 / 256, "LOGISTIC: 8-bit output scale 1/256, "
                                                   "zero point -128 (int8) / 0 (uint8)"),
    aten.tanh.default: FixedRange(-1.0, 1 / 128, "TANH: 8-bit output scale 1/128, "
                                                 "zero point 0 (int8) / 128 (uint8)"),
    aten._softmax.default: FixedRange(0.0, 1 / 256, "SOFTMAX: 8-bit output scale 1/256, "
                                                    "zero point -128 (int8) / 0 (uint8)"),
    aten.softmax.int: FixedRange(0.0, 1 / 256, "SOFTMAX: 8-bit output scale 1/256, "
                                               "zero point -128 (int8) / 0 (uint8)"),
}

# elementwise ops whose constant operand (a scalar or a parameter) gets an int8 per-tensor
# symmetric encoding of its own, as TFLite's int8 ADD/SUB/MUL read a quantized tensor there
CONSTANT_OPERAND_OPS = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.rsub.Scalar,
                        aten.rsub.Tensor, aten.prelu.default}
CONSTANT_QUANT = TensorQuant(bits=8, symmetric=True, per_channel=False)

QUANTIZER_ROOT = "_quantizers"


@dataclass
class InsertionResult:
    quantizers: dict[str, Quantizer] = field(default_factory=dict)
    output_key: str | None = None
    layers: list[str] = field(default_factory=list)  # module paths of weighted ops


def _is_float_tensor(node: Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.is_floating_point()


def _clamp_folds(node: Node) -> bool:
    """A clamp/hardtanh folds into the range only if its lower bound is 0 (ReLU, ReLU6)."""
    if node.target is aten.relu6.default:
        return True
    lower = node.args[1] if len(node.args) > 1 else node.kwargs.get("min", -1.0)
    return lower is not None and float(lower) == 0.0


def is_foldable_activation(node: Node) -> bool:
    return node.op == "call_function" and (
        node.target in RELU_OPS or (node.target in CLAMP_OPS and _clamp_folds(node)))


def _pad_is_passthrough(node: Node) -> bool:
    if node.target is aten.constant_pad_nd.default:
        value = node.args[2] if len(node.args) > 2 else 0.0
    else:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", None)
        if mode != "constant":
            return False
    return value is None or float(value) == 0.0


def attr_name(key: str) -> str:
    """A Python identifier for a quantizer key (keys come from the model: never trusted)."""
    return re.sub(r"\W", "_", key)


class _Inserter:
    def __init__(self, gm: GraphModule, scheme: QuantScheme) -> None:
        self.gm, self.scheme, self.graph = gm, scheme, gm.graph
        self.root = nn.Module()
        gm.add_module(QUANTIZER_ROOT, self.root)
        self.result = InsertionResult()
        self.grid: dict[Node, ActivationQuantizer] = {}  # value -> the grid it lies on
        self.excluded_used: set[str] = set()
        self.converted: dict[tuple[Node, int], Node] = {}  # (value, bits) -> its converted copy

    def _register(self, q: Quantizer) -> None:
        name = attr_name(q.key)
        if hasattr(self.root, name):
            raise ConvdeployError(f"two quantized tensors map to the name {name!r}",
                                  fix="rename one of the model's layers")
        self.root.add_module(name, q)
        self.result.quantizers[q.key] = q

    def _place_after(self, node: Node, q: Quantizer) -> Node:
        with self.graph.inserting_after(node):
            qnode = self.graph.call_module(f"{QUANTIZER_ROOT}.{attr_name(q.key)}", (node,))
        node.replace_all_uses_with(qnode, delete_user_cb=lambda user: user is not qnode)
        q.tensors.append(node.name)
        qnode.meta = dict(node.meta)
        return qnode

    def _new_activation(self, node: Node, fixed: FixedRange | None = None,
                        quant: TensorQuant | None = None) -> ActivationQuantizer:
        q = ActivationQuantizer(node.name, quant or self.scheme.activations,
                                module=module_path(node), fixed=fixed)
        self._register(q)
        qnode = self._place_after(node, q)
        self.grid[node] = self.grid[qnode] = q
        return q

    def _share(self, node: Node, q: ActivationQuantizer) -> None:
        qnode = self._place_after(node, q)
        self.grid[node] = self.grid[qnode] = q

    def _convert_inputs(self, node: Node, quant: TensorQuant) -> None:
        """Mixed activation widths: every quantized input of ``node`` on a grid of another width
        is first requantized to a grid of ``quant``'s width (calibrated on what it carries),
        shared by every consumer at that width. Integer runtimes group each op with the Q/DQ
        around it only when its inputs and output have one type (onnxruntime's QDQ selectors,
        which the HTP's EP uses), and a width change between ops is then a requantize of its
        own (QNN's Convert, TFLite's QUANTIZE)."""
        def convert(arg):
            if isinstance(arg, (list, tuple)):
                return type(arg)(convert(a) for a in arg)
            if not isinstance(arg, Node) or arg not in self.grid \
                    or self.grid[arg].tq.bits == quant.bits:
                return arg
            done = self.converted.get((arg, quant.bits))
            if done is None:
                key = f"{self.grid[arg].key}.a{quant.bits}"
                if key in self.result.quantizers:  # a slice/pool of the same grid, converted too
                    key = f"{arg.name}.a{quant.bits}"
                q = ActivationQuantizer(key, quant, module=self.grid[arg].module_path)
                self._register(q)
                with self.graph.inserting_before(node):
                    done = self.graph.call_module(f"{QUANTIZER_ROOT}.{attr_name(q.key)}",
                                                  (arg,))
                done.meta = dict(arg.meta)
                q.tensors.append(arg.name)
                self.grid[done] = q
                self.converted[(arg, quant.bits)] = done
            return done

        node.args = convert(node.args)

    def _excluded(self, node: Node) -> bool:
        path = module_path(node)
        for o in self.scheme.overrides:
            if path == o.layer or path.startswith(o.layer + "."):
                self.excluded_used.add(o.layer)
        for name in self.scheme.exclude:
            if path == name or path.startswith(name + "."):
                self.excluded_used.add(name)
                return True
        return self.scheme.weights_for(path) is None

    def _quantize_params(self, node: Node) -> WeightQuantizer | None:
        """Weight (and int32 bias) quantizers of a conv/linear node; returns the weight's."""
        path = module_path(node)
        w_node = node.args[1]
        if w_node.op != "get_attr":
            return None  # weights computed at run time: left in float, output still quantized
        wq = self.result.quantizers.get(w_node.target)  # a weight shared by several layers
        if wq is None:
            wq = WeightQuantizer(w_node.target, self.scheme.weights_for(path), module=path)
            wq.init_from(get_attr_tensor(self.gm, w_node.target))
            self._register(wq)
        self._insert_on_arg(node, 1, wq)
        b_node = node.args[2] if len(node.args) > 2 else None
        input_q = self.grid.get(node.args[0])
        if b_node is None or b_node.op != "get_attr" or input_q is None:
            return wq
        bq = self.result.quantizers.get(b_node.target)
        if bq is None:
            channels = get_attr_tensor(self.gm, b_node.target).numel()
            bq = BiasQuantizer(b_node.target, input_q, wq, channels, module=path)
            self._register(bq)
        elif bq._tied != (input_q, wq):
            return wq  # a bias shared across different input grids has no single int32 scale
        self._insert_on_arg(node, 2, bq)
        return wq

    def _insert_on_arg(self, node: Node, index: int, q: Quantizer) -> None:
        src = node.args[index]
        with self.graph.inserting_before(node):
            qnode = self.graph.call_module(f"{QUANTIZER_ROOT}.{attr_name(q.key)}", (src,))
        args = list(node.args)
        args[index] = qnode
        node.args = tuple(args)
        q.tensors.append(src.target)

    def _quantize_constant_operand(self, node: Node) -> None:
        """``x + c``, ``x * c``: the constant (lifted to a buffer when it is a Python number)
        gets its own per-tensor int8 encoding; a product/sum of two activations needs none."""
        for index, arg in enumerate(node.args[:2]):
            if isinstance(arg, (int, float)) and not isinstance(arg, bool):
                value = torch.tensor(float(arg))
                target = attr_name(f"{node.name}_const{index}")
                self.gm.register_buffer(target, value)
                with self.graph.inserting_before(node):
                    arg = self.graph.get_attr(target)
                arg.meta["val"] = value
                args = list(node.args)
                args[index] = arg
                node.args = tuple(args)
                if node.target is aten.rsub.Scalar:  # c - x, with c now a tensor
                    node.target = aten.rsub.Tensor
            if isinstance(arg, Node) and arg.op == "get_attr":
                q = self.result.quantizers.get(arg.target)
                if q is None:
                    q = WeightQuantizer(arg.target, CONSTANT_QUANT, module=module_path(node))
                    q.init_from(get_attr_tensor(self.gm, arg.target))
                    self._register(q)
                self._insert_on_arg(node, index, q)

    def _output_point(self, node: Node) -> Node:
        """Where the output quantizer of ``node`` stands: after a sole-user ReLU/ReLU6."""
        users = list(node.users)
        if len(users) == 1 and is_foldable_activation(users[0]):
            return users[0]
        return node

    def run(self) -> InsertionResult:
        if self.scheme.activations is None:
            raise ConvdeployError("weight-only schemes are not supported by the CPU exporters yet",
                                  fix="give the scheme an activation quantizer (e.g. w8a8)")
        skip: set[Node] = set()
        for node in list(self.graph.nodes):
            if node in skip or not _is_float_tensor(node):
                continue
            if node.op == "placeholder":
                self._new_activation(node)
            elif node.op == "call_function" and node.target is operator.getitem:
                source = node.args[0]
                if source.target in SPLIT_OPS and source.args[0] in self.grid:
                    self._share(node, self.grid[source.args[0]])  # a part keeps the grid
            elif node.op == "call_function":
                self._visit(node, skip)
        named = set(self.scheme.exclude) | {o.layer for o in self.scheme.overrides}
        unused = named - self.excluded_used
        if unused:
            raise ConvdeployError(
                f"--exclude/--override names no layer of this model: {', '.join(sorted(unused))}",
                fix=f"use module paths such as {', '.join(self.result.layers[:4])}")
        outputs = self.graph.output_node().args[0]
        first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        if first in self.grid:  # the model output's encoding defines the output LSB
            self.result.output_key = self.grid[first].key
        self.graph.lint()
        self.gm.recompile()
        return self.result

    def _visit(self, node: Node, skip: set[Node]) -> None:
        src = node.args[0] if node.args and isinstance(node.args[0], Node) else None
        if node.target in ALIAS_OPS:
            if src in self.grid:
                self.grid[node] = self.grid[src]
            return
        passthrough = node.target in PASSTHROUGH_OPS or (
            node.target in PAD_OPS and _pad_is_passthrough(node))
        if passthrough and src in self.grid:
            self._share(node, self.grid[src])
            return
        wq, quant = None, self.scheme.activations
        if node.target in WEIGHTED_OPS:
            self.result.layers.append(module_path(node))
            if self._excluded(node):
                return
            quant = self.scheme.activations_for(module_path(node))  # an override's width
            self._convert_inputs(node, quant)
            wq = self._quantize_params(node)
        else:
            self._convert_inputs(node, quant)
            if node.target in CONSTANT_OPERAND_OPS:
                self._quantize_constant_operand(node)
        point = self._output_point(node)
        if point is not node:
            skip.add(point)
        fixed = FIXED_OUTPUTS.get(node.target) if point is node else None
        output_q = self._new_activation(point, fixed if self.scheme.activations.bits == 8
                                        else None, quant)
        input_q = self.grid.get(node.args[0])
        if wq is not None and input_q is not None:
            wq.requant.append((input_q, output_q))  # for the multiplier floor


def insert_quantizers(gm: GraphModule, scheme: QuantScheme) -> InsertionResult:
    """Insert quantizer modules (mode OFF: the graph still computes float) into ``gm``."""
    return _Inserter(gm, scheme).run()


def quantizers_of(gm: GraphModule) -> dict[str, Quantizer]:
    root = getattr(gm, QUANTIZER_ROOT, None)
    return {} if root is None else {q.key: q for q in root.children()}
