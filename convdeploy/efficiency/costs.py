"""What each layer of an exported graph must compute and move: MACs and compulsory bytes.

Counted from the ONNX file a target runs (float or QDQ), never from the torch model, so the
numbers describe the deployed graph: a QDQ layer's weights count at their stored width (4-bit
codes as half a byte), its input and output at the width of the quantizer on them (uint8: 1
byte, uint16: 2), float tensors at 4 bytes. "Compulsory" is the roofline's minimum traffic:
weights, bias, input and output each read or written once (Williams et al. 2009); what a
runtime spills beyond that shows up as lower efficiency, not as more bytes.

A layer is one ONNX compute node. A node that owns weights (Conv, Gemm, MatMul with an
initializer operand) is named by its module path, the weight initializer's name less
``.weight`` (the exporter keeps the torch state-dict names); any other node by its op type and
node name (``Add node_add_45``), so the ResNet shortcut's Slice and Pad stay visible.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Nodes that carry numbers between layers without computing a layer of their own: their time
# (if a runtime runs them at all) is reported under the node, but they are not roofline layers.
QUANTIZERS = ("QuantizeLinear", "DequantizeLinear")
_PASS_THROUGH = QUANTIZERS + ("Identity",)  # no work of their own; runtimes drop Identity
_BYTES = {1: 4.0, 10: 2.0, 11: 8.0, 2: 1.0, 3: 1.0, 4: 2.0, 5: 2.0, 6: 4.0, 7: 8.0, 9: 1.0,
          21: 0.5, 22: 0.5}  # onnx TensorProto data types: FLOAT, FLOAT16, DOUBLE, UINT8, ...
_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid")
_WEIGHT_SUFFIXES = (".weight.quantized", ".weight", ".bias.quantized", ".bias")


@dataclass(frozen=True)
class LayerCost:
    """One compute node of the deployed graph."""

    layer: str  # module path (weighted nodes) or "OpType node_name"
    node: str  # the ONNX node's name
    op: str
    macs: int  # multiply-accumulates for the whole batch (0 for data movement)
    weight_bytes: float  # weights and bias at their stored widths
    input_bytes: float  # activations read (every non-constant input)
    output_bytes: float  # activations written
    weighted: bool

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.input_bytes + self.output_bytes

    @property
    def intensity(self) -> float:
        """MACs per compulsory byte (the roofline's x axis)."""
        return self.macs / self.bytes if self.bytes else 0.0


def module_of(initializer: str) -> str | None:
    """``layer1.0.conv1.weight.quantized`` -> ``layer1.0.conv1``; None for non-weight names."""
    for suffix in _WEIGHT_SUFFIXES:
        if initializer.endswith(suffix):
            return initializer[: -len(suffix)]
    return None


class GraphIndex:
    """The ONNX graph read once: producers, initializers, the dequantized constants behind
    each tensor, and each compute node's layer name. Shared by cost counting and by the
    runtime profilers' mapping of fused nodes back to layers."""

    def __init__(self, model, *, batch: int = 1):
        import onnx

        self.model = onnx.shape_inference.infer_shapes(_batch_one(model))
        # Costs are counted at the file's own batch and scaled: activations and MACs grow with
        # the batch, weights do not (a Reshape with a baked batch would not re-infer).
        first = self.model.graph.input[0].type.tensor_type.shape.dim
        self.scale = batch / max(1, first[0].dim_value if first else 1)
        graph = self.model.graph
        self.initializers = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.types = {v.name: v.type.tensor_type for v in
                      list(graph.value_info) + list(graph.input) + list(graph.output)}
        self.readers: dict[str, list] = {}
        for n in graph.node:
            for t in n.input:
                self.readers.setdefault(t, []).append(n)
        compute = [n for n in graph.node if n.op_type not in _PASS_THROUGH + ("Constant",)]
        # An activation that is its producer's only reader runs inside the producer's kernel on
        # every runtime here (ORT FusedConv/QLinearConv, OpenVINO post-ops, TFLite's fused
        # activation): it belongs to that layer, not a layer of its own.
        self.absorbed: dict[str, str] = {}  # node name -> the node it runs inside
        for n in compute:
            if n.op_type in _ACTIVATIONS:
                head = self._fusable_producer(n)
                if head is not None:
                    self.absorbed[n.name] = self.absorbed.get(head.name, head.name)
        self.nodes = [n for n in compute if n.name not in self.absorbed]
        self.tail = {n.name: n for n in self.nodes}
        for n in compute:
            if n.name in self.absorbed:
                self.tail[self.absorbed[n.name]] = n
        self.layer_of_node = {n.name: self._layer_name(n) for n in self.nodes}
        # quantizers a runtime leaves unfused run as kernels of their own: named, not costed
        self.quantizer_nodes = {n.name: f"{n.op_type} {n.name}" for n in graph.node
                                if n.op_type in QUANTIZERS and n.name}
        for name, head in self.absorbed.items():
            self.layer_of_node[name] = self.layer_of_node[head]
        self.nodes_by_length = sorted((n for n in self.layer_of_node if n), key=len,
                                      reverse=True)

    def _fusable_producer(self, node):
        """The compute node whose output ``node`` (an activation) reads, looking through one
        Q/DQ pair, when ``node`` is that output's only reader."""
        tensor = node.input[0]
        for _ in range(2):
            producer = self.producer.get(tensor)
            if producer is None or len(self.readers.get(tensor, [])) != 1:
                return None
            if producer.op_type not in QUANTIZERS:
                return producer if producer.op_type not in ("Constant", "Identity") else None
            tensor = producer.input[0]
        return None

    def layer_of_tensor(self, tensor: str) -> str | None:
        """The layer that computes ``tensor`` (looking back through quantizers)."""
        for _ in range(4):
            node = self.producer.get(tensor)
            if node is None:
                return None
            if node.op_type not in _PASS_THROUGH:
                return self.layer_of_node.get(node.name)
            tensor = node.input[0]
        return None

    # -- constants and quantizers --------------------------------------------------------
    def constant_source(self, tensor: str) -> str | None:
        """The initializer a tensor is (or is the dequantization of), else None."""
        if tensor in self.initializers:
            return tensor
        node = self.producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear" \
                and node.input[0] in self.initializers:
            return node.input[0]
        return None

    def owned_initializers(self, node) -> list[str]:
        """The weight/bias initializers a compute node owns (never shared scales)."""
        return [src for t in node.input if (src := self.constant_source(t))
                and module_of(src) is not None]

    def _layer_name(self, node) -> str:
        for src in self.owned_initializers(node):
            module = module_of(src)
            if src.endswith((".weight", ".weight.quantized")) and module:
                return module
        return f"{node.op_type} {node.name or node.output[0]}"

    def is_weighted(self, node) -> bool:
        return any(s.endswith((".weight", ".weight.quantized"))
                   for s in self.owned_initializers(node))

    def activation_bytes(self, tensor: str) -> float:
        """Bytes per element of an activation as the deployed graph stores it: the width of
        the quantizer that produced it (QDQ) or its own element type (float)."""
        node = self.producer.get(tensor)
        if node is not None and node.op_type == "DequantizeLinear":
            return _elem_bytes(self._dtype(node.input[0]))
        return _elem_bytes(self._dtype(tensor))

    def _dtype(self, tensor: str) -> int:
        if tensor in self.initializers:
            return self.initializers[tensor].data_type
        t = self.types.get(tensor)
        return t.elem_type if t is not None else 1

    def elements(self, tensor: str) -> int:
        if tensor in self.initializers:
            return int(np.prod(self.initializers[tensor].dims, dtype=np.int64))
        t = self.types.get(tensor)
        if t is None or not t.HasField("shape"):
            raise ValueError(f"the shape of tensor {tensor!r} is unknown after ONNX shape "
                             "inference; export the model with static input shapes")
        dims = [d.dim_value for d in t.shape.dim]
        if any(d <= 0 for d in dims):
            raise ValueError(f"tensor {tensor!r} has a dynamic shape {dims}; export the model "
                             "with static shapes (the batch is fixed by the profile)")
        return int(np.prod(dims, dtype=np.int64))

    def shape(self, tensor: str) -> list[int]:
        if tensor in self.initializers:
            return list(self.initializers[tensor].dims)
        return [d.dim_value for d in self.types[tensor].shape.dim]

    # -- costs ---------------------------------------------------------------------------
    def cost(self, node) -> LayerCost:
        weights, inputs = 0.0, 0.0
        for t in node.input:
            if not t:
                continue
            src = self.constant_source(t)
            if src is not None:
                if module_of(src) is not None:
                    weights += self.elements(src) * _elem_bytes(self._dtype(src))
                continue  # shapes, pads, scales: metadata, not traffic
            inputs += self.elements(t) * self.activation_bytes(t)
        tail = self.tail[node.name]
        outputs = sum(self.elements(o) * self._stored_output_bytes(o) for o in tail.output if o)
        return LayerCost(self.layer_of_node[node.name], node.name, node.op_type,
                         int(round(self.macs(node) * self.scale)), weights,
                         inputs * self.scale, outputs * self.scale, self.is_weighted(node))

    def _stored_output_bytes(self, tensor: str) -> float:
        """An output that a QuantizeLinear reads is stored at that quantizer's width."""
        readers = self.readers.get(tensor, [])
        if len(readers) == 1 and readers[0].op_type == "QuantizeLinear":
            return _elem_bytes(self._dtype(readers[0].output[0]))
        return _elem_bytes(self._dtype(tensor))

    def macs(self, node) -> int:
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w = self.shape(node.input[1] if op != "QLinearConv" else node.input[3])
            out = self.elements(node.output[0])
            return int(out * int(np.prod(w[1:], dtype=np.int64)))  # Cin/groups * kernel
        if op in ("Gemm", "MatMul", "MatMulInteger"):
            a = self.shape(node.input[0])
            b = self.shape(node.input[1])
            trans_b = any(x.name == "transB" and x.i for x in node.attribute)
            k = b[-1] if trans_b else (b[-2] if len(b) > 1 else b[0])
            return int(self.elements(node.output[0]) * k) if a else 0
        return 0

    def costs(self) -> list[LayerCost]:
        return [self.cost(n) for n in self.nodes]


def _elem_bytes(data_type: int) -> float:
    return _BYTES.get(data_type, 4.0)


def _batch_one(model):
    """A copy of ``model`` whose graph input has batch 1 where it was dynamic, and no stale
    shape annotations (they are inferred again)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]
    inits = {i.name for i in model.graph.initializer}
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.name not in inits and dims and not dims[0].dim_value:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    return model


def layer_costs(path: Path, *, batch: int = 1) -> list[LayerCost]:
    """The compute nodes of the ONNX file at ``path`` with their MACs and compulsory bytes
    at ``batch``."""
    import onnx

    return GraphIndex(onnx.load(str(path)), batch=batch).costs()
