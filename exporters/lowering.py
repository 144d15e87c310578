"""Lowering: an exported ONNX model (float, or QDQ carrying the Encodings) -> ``OpGraph``.

``OpGraph`` is the small operator list that integer targets share: the integer reference
executes it, the TFLite writer serialises it. Each op is a deployable kernel with its activation
fused (Conv+ReLU -> CONV_2D/RELU); in a QDQ model every op's output is the integer tensor of
the QuantizeLinear that follows it, so the numbers are the ``Encodings``' and nothing else.
Layout stays NCHW here; the TFLite writer transposes.

Anything the lowering does not know is refused with the node's name and op (``LoweringError``),
which targets report from ``check()`` before any run.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from .conv3d_rewrite import conv3d, mean_thw
from .opgraph import Activation, Op, OpGraph, OpKind, QParams, infer_shapes
from .qdq import _constants

__all__ = ["Activation", "LoweringError", "Op", "OpGraph", "OpKind", "QParams", "infer_shapes",
           "lower", "lower_file"]


class LoweringError(ValueError):
    """The model holds something integer targets cannot run (the message names it)."""


_QTYPES = {TensorProto.INT8: (8, True), TensorProto.UINT8: (8, False),
           TensorProto.INT16: (16, True), TensorProto.UINT16: (16, False),
           TensorProto.INT4: (4, True), TensorProto.UINT4: (4, False)}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Lowerer:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.consts = _constants(self.graph)
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.input = self.graph.input[0].name
        self.output = self.graph.output[0].name
        self.shapes = _value_shapes(model)
        self.quant: dict[str, QParams] = {}
        self.alias: dict[str, str] = {}  # DQ(activation) output -> its integer tensor
        self.weights: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # DQ(const) output
        self.ops: list[Op] = []
        self.fused: set[str] = set()  # activation nodes folded into their producer
        self.transposed: set[str] = set()  # weights stored [in, out] (a MatMul's operand)

    def qparams(self, node: onnx.NodeProto) -> QParams:
        scale = self.consts[node.input[1]]
        zp_init = next(i for i in self.graph.initializer if i.name == node.input[2])
        bits, signed = _QTYPES[zp_init.data_type]
        if scale.size != 1:
            raise LoweringError(f"{node.name}: per-channel activation quantization")
        zp = int(np.asarray(self.consts[node.input[2]]).astype(np.int64).reshape(-1)[0])
        return QParams(float(np.float32(scale.reshape(-1)[0])), zp, bits, signed)

    def run(self) -> OpGraph:
        for node in self.graph.node:
            if node.op_type == "QuantizeLinear":
                self._quantize(node)
            elif node.op_type == "DequantizeLinear":
                self._dequantize(node)
            elif node.op_type == "Constant" or node.name in self.fused:
                continue
            elif node.op_type == "Identity":
                self.alias[node.output[0]] = self.resolve(node.input[0])
            else:
                self._compute(node)
        if self.output in self.alias:  # an Identity names the output: the producer writes it
            produced = self.alias[self.output]
            for op in self.ops:
                op.inputs = tuple(self.output if i == produced else i for i in op.inputs)
                op.output = self.output if op.output == produced else op.output
        shape = [d.dim_value for d in self.graph.input[0].type.tensor_type.shape.dim][1:]
        return OpGraph(self.ops, self.quant, self.input, self.output, tuple(shape))

    def resolve(self, name: str) -> str:
        return self.alias.get(name, name)

    def _quantize(self, node: onnx.NodeProto) -> None:
        q = self.quant[node.output[0]] = self.qparams(node)
        src = self.resolve(node.input[0])
        if node.input[0] == self.input:
            self.ops.append(Op(OpKind.QUANTIZE, (self.input,), node.output[0], node.name))
        elif src in self.quant:  # DQ -> Q: codes onto another grid (a width change)
            if self.quant[src] == q:
                self.alias[node.output[0]] = src
            else:
                self.ops.append(Op(OpKind.REQUANTIZE, (src,), node.output[0], node.name))

    def _dequantize(self, node: onnx.NodeProto) -> None:
        src, out = node.input[0], node.output[0]
        if src in self.consts:  # a weight or bias: integer codes with their scales
            scale = np.asarray(self.consts[node.input[1]], dtype=np.float32).reshape(-1)
            self.weights[out] = (np.asarray(self.consts[src]).astype(np.int64), scale)
        elif out == self.output:
            self.ops.append(Op(OpKind.DEQUANTIZE, (src,), out, node.name))
        else:
            self.alias[out] = src

    def _value(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        """A constant operand: (codes, scale) after a DQ, or (float values, None)."""
        if name in self.weights:
            return self.weights[name]
        if name in self.consts:
            return np.asarray(self.consts[name]), None
        raise LoweringError(f"{name!r} is a computed weight; only constant weights are lowered")

    def _output(self, node: onnx.NodeProto, fusable: bool,
                value: str | None = None) -> tuple[str, Activation]:
        """Where the op writes (its output ``value``, the first by default): through a fused
        ReLU/ReLU6 and into the following QuantizeLinear."""
        value, act = value or node.output[0], Activation.NONE
        users = self.consumers[value]
        if fusable and len(users) == 1 and users[0].op_type in ("Relu", "Clip"):
            act = self._activation(users[0])
            self.fused.add(users[0].name)
            value = users[0].output[0]
        users = self.consumers[value]
        q = [u for u in users if u.op_type == "QuantizeLinear"]
        if self.quant or q:
            if len(q) != 1 or len(users) != 1:
                raise LoweringError(f"{node.name} ({node.op_type}): its output is not quantized "
                                    "once (a float layer inside a quantized model)")
            self.quant[q[0].output[0]] = self.qparams(q[0])  # known before the Q node is met
            return q[0].output[0], act
        return value, act

    def _activation(self, node: onnx.NodeProto) -> Activation:
        if node.op_type == "Relu":
            return Activation.RELU
        low, high = (float(self.consts[n]) if n in self.consts else None for n in node.input[1:3])
        if low == 0.0 and high == 6.0:
            return Activation.RELU6
        raise LoweringError(f"{node.name}: Clip({low}, {high}) has no fused integer form "
                            "(only ReLU and ReLU6)")

    def _compute(self, node: onnx.NodeProto) -> None:
        from convdeploy.quant.float_kernels import ISLAND_OPS

        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None and node.op_type in ISLAND_OPS:
            handler = getattr(self, f"_island_{node.op_type}")
        if handler is None:
            supported = sorted({n[4:] for n in dir(self) if n.startswith("_op_")} |
                               set(ISLAND_OPS))
            raise LoweringError(f"{node.name}: op {node.op_type} has no integer kernel here "
                                f"(supported: {', '.join(supported)}; Relu/Clip after them)")
        handler(node)

    def _op_Conv(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        weight, scale = self._value(node.input[1])
        bias = self._value(node.input[2])[0] if len(node.input) > 2 and node.input[2] else None
        group = a.get("group", 1)
        out_ch, in_per_group = weight.shape[:2]
        # depthwise when each channel has its own filter; any other grouping stays a CONV_2D
        # whose filters read C/groups channels (TFLite's grouped CONV_2D)
        kind = OpKind.DEPTHWISE_CONV if group > 1 and in_per_group == 1 and out_ch == group \
            else OpKind.CONV
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise LoweringError(f"{node.name}: auto_pad is not lowered; export explicit pads")
        out, act = self._output(node, True)
        k = len(weight.shape) - 2
        if k == 3:  # no integer consumer has CONV_3D: the exact (2+1)D rewrite
            conv3d(self, node, self.resolve(node.input[0]), out, act, weight, scale, bias, a,
                   self.shapes.get(node.input[0], ()))
            return
        self.ops.append(Op(kind, (self.resolve(node.input[0]),), out, node.name, act, weight,
                           scale, bias, {"strides": tuple(a.get("strides", (1,) * k)),
                                         "pads": tuple(a.get("pads", (0,) * 2 * k)),
                                         "dilations": tuple(a.get("dilations", (1,) * k)),
                                         "groups": group}))

    def _op_Gemm(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
            raise LoweringError(f"{node.name}: Gemm with alpha/beta/transA is not lowered")
        weight, scale = self._value(node.input[1])
        if not a.get("transB", 0):
            weight = weight.T
            if scale is not None and scale.size > 1:
                raise LoweringError(f"{node.name}: per-channel weights on the wrong Gemm axis")
        bias = self._value(node.input[2])[0] if len(node.input) > 2 and node.input[2] else None
        out, act = self._output(node, True)
        self.ops.append(Op(OpKind.FULLY_CONNECTED, (self.resolve(node.input[0]),), out,
                           node.name, act, np.ascontiguousarray(weight), scale, bias))

    def _op_MatMul(self, node: onnx.NodeProto) -> None:
        """``x @ W^T (+ b)``: a linear layer on a tensor of any rank (torch exports
        ``nn.Linear`` on (N, H, W, C) so): FULLY_CONNECTED over the last axis, the bias from
        the Add that follows, when there is one."""
        if node.input[1] not in self.transposed:
            raise LoweringError(f"{node.name}: MatMul of two activations (or of a weight not "
                                "stored as [in, out]) is not lowered")
        codes, scale = self._value(node.input[1])
        weight = np.ascontiguousarray(codes.T)  # [out, in], per-channel axis 0 again
        bias, last = None, node
        users = self.consumers[node.output[0]]
        if len(users) == 1 and users[0].op_type == "Add":
            other = [i for i in users[0].input if i != node.output[0]]
            if len(other) == 1 and (other[0] in self.weights or other[0] in self.consts):
                bias = self._value(other[0])[0]
                last = users[0]
                self.fused.add(last.name)
        out, act = self._output(last, True)
        self.ops.append(Op(OpKind.FULLY_CONNECTED, (self.resolve(node.input[0]),), out,
                           node.name, act, weight, scale, bias))

    def _binary(self, node: onnx.NodeProto, kind: OpKind) -> None:
        """ADD/SUB/MUL of two activations, or of an activation and a constant (its int8 codes
        and per-tensor scale kept on the op; a float constant in a float graph)."""
        const = [k for k, i in enumerate(node.input) if i in self.consts or i in self.weights]
        if not const:
            out, act = self._output(node, True)
            self.ops.append(Op(kind, tuple(self.resolve(i) for i in node.input), out,
                               node.name, act))
            return
        if len(const) == 2:
            raise LoweringError(f"{node.name}: {node.op_type} of two constants (fold it)")
        codes, scale = self._per_tensor_constant(node, node.input[const[0]])
        other = node.input[1 - const[0]]
        out, act = self._output(node, True)
        self.ops.append(Op(kind, (self.resolve(other),), out, node.name, act,
                           weight=codes, weight_scale=scale,
                           attrs={"constant_first": const[0] == 0}))

    def _per_tensor_constant(self, node: onnx.NodeProto, name: str):
        """(codes, scale) of an elementwise op's constant operand: in a quantized graph it
        must carry one int8 per-tensor encoding (what TFLite's int8 kernels read)."""
        codes, scale = self._value(name)
        if self.quant and (scale is None or scale.size != 1):
            raise LoweringError(f"{node.name}: {node.op_type} of a constant without a "
                                "per-tensor encoding (quantize the model with convdeploy)")
        return np.asarray(codes), scale

    def _op_Add(self, node: onnx.NodeProto) -> None:
        self._binary(node, OpKind.ADD)

    def _op_Sub(self, node: onnx.NodeProto) -> None:
        self._binary(node, OpKind.SUB)

    def _op_Mul(self, node: onnx.NodeProto) -> None:
        self._binary(node, OpKind.MUL)

    def _unary(self, node: onnx.NodeProto, kind: OpKind, **attrs) -> None:
        out, _ = self._output(node, False)
        src = self.quant.get(self.resolve(node.input[0]))
        if self.quant and (src is None or src.bits != 8 or self.quant[out].bits != 8):
            raise LoweringError(f"{node.name}: {node.op_type} has integer kernels for 8-bit "
                                "activations only (use an 8-bit activation scheme)")
        self.ops.append(Op(kind, (self.resolve(node.input[0]),), out, node.name, attrs=attrs))

    def _op_Split(self, node: onnx.NodeProto) -> None:
        """Each part a STRIDED_SLICE of the input (the parts keep the input's encoding)."""
        rank = len(self.shapes.get(node.input[0], ()))
        axis = int(_attrs(node).get("axis", 0)) % rank
        if axis == 0:
            raise LoweringError(f"{node.name}: a split along the batch dimension")
        start = 0
        for value in node.output:
            size = self.shapes[value][axis]
            out, _ = self._output(node, False, value)
            self.ops.append(Op(OpKind.STRIDED_SLICE, (self.resolve(node.input[0]),), out,
                               f"{node.name}.{value}",
                               attrs={"starts": [start], "ends": [start + size], "axes": [axis],
                                      "steps": [1]}))
            start += size

    def _op_LeakyRelu(self, node: onnx.NodeProto) -> None:
        alpha = float(np.float32(_attrs(node).get("alpha", 0.01)))
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.LEAKY_RELU, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"alpha": alpha}))

    def _op_PRelu(self, node: onnx.NodeProto) -> None:
        """The slope is a constant: int8 codes with a per-tensor scale (float in a float
        graph), broadcast along the channels."""
        codes, scale = self._per_tensor_constant(node, node.input[1])
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.PRELU, (self.resolve(node.input[0]),), out, node.name,
                           weight=codes, weight_scale=scale))

    def _op_Sigmoid(self, node: onnx.NodeProto) -> None:
        self._unary(node, OpKind.LOGISTIC)

    def _op_Tanh(self, node: onnx.NodeProto) -> None:
        self._unary(node, OpKind.TANH)

    def _op_Gelu(self, node: onnx.NodeProto) -> None:
        approximate = _attrs(node).get("approximate", b"none")
        self._unary(node, OpKind.GELU, approximate=approximate in (b"tanh", "tanh"))

    def _op_HardSwish(self, node: onnx.NodeProto) -> None:
        self._unary(node, OpKind.HARD_SWISH)

    def _op_Softmax(self, node: onnx.NodeProto) -> None:
        rank = len(self.shapes.get(node.input[0], ()))
        if rank and int(_attrs(node).get("axis", -1)) % rank != rank - 1:
            raise LoweringError(f"{node.name}: Softmax over an axis other than the last")
        self._unary(node, OpKind.SOFTMAX)

    def _island_LayerNormalization(self, node: onnx.NodeProto) -> None:
        """No integer kernel: the op runs in float between the Encodings' numbers."""
        a = _attrs(node)
        rank = len(self.shapes.get(node.input[0], ()))
        axis = int(a.get("axis", -1)) % rank if rank else int(a.get("axis", -1))
        if axis != rank - 1:
            raise LoweringError(f"{node.name}: LayerNormalization over axes {axis}.. of "
                                f"{rank} (only the last axis runs as an island)")
        consts = [self._float_const(n) if n else None for n in
                  (list(node.input[1:3]) + [""] * 2)[:2]]
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.FLOAT_ISLAND, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"onnx": "LayerNormalization", "axis": axis,
                                  "epsilon": float(a.get("epsilon", 1e-5)),
                                  "scale": consts[0], "bias": consts[1]}))

    def _float_const(self, name: str) -> np.ndarray:
        """A constant operand of an island in float32 (a quantized one as DequantizeLinear
        computes it: codes times scale)."""
        values, scale = self._value(name)
        if scale is None:
            return np.asarray(values, dtype=np.float32)
        return (values.astype(np.float32) * scale.astype(np.float32)).astype(np.float32)

    def _onto(self, src: str, q: QParams | None, name: str) -> str:
        """``src`` on the grid ``q``: itself, or a REQUANTIZE of it (TFLite's int8 kernels that
        move values, such as CONCATENATION, need one quantization on both sides)."""
        if q is None or self.quant.get(src) == q:
            return src
        out = f"{src}.requantized.{name}"
        self.quant[out] = q
        self.ops.append(Op(OpKind.REQUANTIZE, (src,), out, f"{name}.requantize"))
        return out

    def _op_Concat(self, node: onnx.NodeProto) -> None:
        axis = int(_attrs(node)["axis"])
        rank = len(self.shapes.get(node.output[0], ()))
        if axis < 0:
            axis += rank
        if axis <= 0:
            raise LoweringError(f"{node.name}: a concatenation along the batch dimension")
        out, _ = self._output(node, False)
        q = self.quant.get(out)
        inputs = tuple(self._onto(self.resolve(i), q, f"{node.name}.{k}")
                       for k, i in enumerate(node.input))
        self.ops.append(Op(OpKind.CONCATENATION, inputs, out, node.name, attrs={"axis": axis}))

    def _op_AveragePool(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        if a.get("ceil_mode", 0) or len(a["kernel_shape"]) != 2:
            raise LoweringError(f"{node.name}: AveragePool with ceil_mode or not 2-D")
        pads = tuple(a.get("pads", (0, 0, 0, 0)))
        src = self.resolve(node.input[0])
        out, act = self._output(node, True)
        if a.get("count_include_pad", 0) and any(pads):  # padding counts: pad real zeros
            padded = f"{src}.padded.{node.name}"
            if src in self.quant:
                self.quant[padded] = self.quant[src]
            t, l, b, r = pads
            self.ops.append(Op(OpKind.PAD, (src,), padded, f"{node.name}.pad",
                               attrs={"pads": [0, 0, t, l, 0, 0, b, r]}))
            src, pads = padded, (0, 0, 0, 0)
        pooled = out
        if self.quant and self.quant.get(src) != self.quant.get(out):
            pooled = f"{out}.on_input_grid"  # TFLite pools int8 on the input's grid
            self.quant[pooled] = self.quant[src]
        self.ops.append(Op(OpKind.AVERAGE_POOL, (src,), pooled, node.name, act,
                           attrs={"kernel": tuple(a["kernel_shape"]),
                                  "strides": tuple(a.get("strides", (1, 1))), "pads": pads}))
        if pooled != out:
            self.ops.append(Op(OpKind.REQUANTIZE, (pooled,), out, f"{node.name}.requantize"))

    def _mean(self, node: onnx.NodeProto, axes, keepdims: bool = True) -> None:
        in_shape = self.shapes.get(node.input[0], ())
        if len(in_shape) == 5 and sorted(int(x) % 5 for x in axes) == [2, 3, 4]:
            out, _ = self._output(node, False)
            mean_thw(self, node, self.resolve(node.input[0]), out, in_shape,
                     self._sample_shape(node))
            return
        if sorted(int(x) % 4 for x in axes) != [2, 3]:
            raise LoweringError(f"{node.name}: a mean over axes {list(axes)} (only the spatial "
                                "mean, axes 2 and 3, is lowered)")
        out, _ = self._output(node, False)
        src = self.resolve(node.input[0])
        if keepdims:
            self.ops.append(Op(OpKind.MEAN, (src,), out, node.name))
            return
        kept = f"{out}.keepdims"  # MEAN keeps (N, C, 1, 1); a RESHAPE drops the two axes
        if out in self.quant:
            self.quant[kept] = self.quant[out]
        self.ops.append(Op(OpKind.MEAN, (src,), kept, node.name))
        self.ops.append(Op(OpKind.RESHAPE, (kept,), out, f"{node.name}.squeeze",
                           attrs={"sample_shape": self._sample_shape(node)}))

    def _op_ReduceMean(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        axes = self.consts[node.input[1]] if len(node.input) > 1 else a.get("axes", ())
        self._mean(node, np.asarray(axes).reshape(-1).tolist(), bool(a.get("keepdims", 1)))

    def _op_GlobalAveragePool(self, node: onnx.NodeProto) -> None:
        self._mean(node, [2, 3])

    def _op_MaxPool(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", (1, 1))):
            raise LoweringError(f"{node.name}: MaxPool with ceil_mode or dilation is not lowered")
        out, act = self._output(node, True)
        self.ops.append(Op(OpKind.MAX_POOL, (self.resolve(node.input[0]),), out, node.name, act,
                           attrs={"kernel": tuple(a["kernel_shape"]),
                                  "strides": tuple(a.get("strides", (1, 1))),
                                  "pads": tuple(a.get("pads", (0, 0, 0, 0)))}))

    def _op_Slice(self, node: onnx.NodeProto) -> None:
        starts, ends, axes, steps = (np.asarray(self.consts[n]).reshape(-1).tolist()
                                     for n in node.input[1:5])
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.STRIDED_SLICE, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"starts": starts, "ends": ends, "axes": axes, "steps": steps}))

    def _op_Pad(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        value = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if mode not in (b"constant", "constant") or (value is not None and float(value) != 0.0):
            raise LoweringError(f"{node.name}: only zero padding is lowered")
        pads = np.asarray(self.consts[node.input[1]]).reshape(-1).tolist()
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.PAD, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"pads": pads}))

    def _sample_shape(self, node: onnx.NodeProto) -> tuple[int, ...]:
        """The per-sample shape a shape-only op produces (ONNX shape inference), which must
        keep the batch as its first, free dimension: integer kernels run any batch size."""
        shape = self.shapes.get(node.output[0])
        if shape is None or not shape or not isinstance(shape[0], str) or \
                any(not isinstance(d, int) for d in shape[1:]):
            raise LoweringError(f"{node.name} ({node.op_type}): output shape {shape} does not "
                                "keep a free batch dimension first and fixed sizes after it "
                                "(only reshapes of the per-sample dimensions are lowered)")
        return tuple(shape[1:])

    def _reshape(self, node: onnx.NodeProto) -> None:
        if node.input[0] in self.weights or node.input[0] in self.consts:
            self._reshape_constant(node)
            return
        sample = self._sample_shape(node)
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.RESHAPE, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"sample_shape": sample}))

    _op_Reshape = _op_Flatten = _op_Squeeze = _op_Unsqueeze = _reshape

    def _reshape_constant(self, node: onnx.NodeProto) -> None:
        """A constant reshaped (a PReLU slope to (1, C, 1, 1)): folded, no op."""
        shape = self.shapes.get(node.output[0])
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise LoweringError(f"{node.name}: a constant reshaped to an unknown shape")
        self._fold_constant(node, lambda v: v.reshape(shape))

    def _fold_constant(self, node: onnx.NodeProto, move) -> None:
        """A shape op on a constant: its codes (or float values) moved, no op emitted."""
        src, out = node.input[0], node.output[0]
        if src in self.weights:
            codes, scale = self.weights[src]
            self.weights[out] = (move(codes), scale)
        else:
            self.consts[out] = move(np.asarray(self.consts[src]))

    def _op_Transpose(self, node: onnx.NodeProto) -> None:
        perm = [int(p) for p in _attrs(node)["perm"]]
        if node.input[0] in self.weights or node.input[0] in self.consts:
            self._fold_constant(node, lambda v: v.transpose(perm))  # a weight, for MatMul
            self.transposed.add(node.output[0])
            return
        if perm[0] != 0:
            raise LoweringError(f"{node.name}: a transpose {perm} that moves the batch "
                                "dimension (only per-sample permutations are lowered)")
        out, _ = self._output(node, False)
        self.ops.append(Op(OpKind.TRANSPOSE, (self.resolve(node.input[0]),), out, node.name,
                           attrs={"perm": tuple(perm)}))


def _value_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    """Every value's shape by ONNX shape inference: ints, and names for symbolic dimensions."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else
                                    (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim)
    return shapes


def lower(model: onnx.ModelProto) -> OpGraph:
    """Lower a float or QDQ ONNX model of one input and one output (see the module doc)."""
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise LoweringError("integer targets lower models of one input and one output")
    return _Lowerer(_uniquely_named(model)).run()


def _uniquely_named(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model itself when every node has its own name; else a copy whose unnamed or repeated
    node names get a unique one (``op_type_index``): ops, fusions and generated code are keyed by
    node name, and ONNX makes names optional (other exporters leave them empty)."""
    names = [n.name for n in model.graph.node]
    if all(names) and len(set(names)) == len(names):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    seen = set(names)
    taken: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if node.name and node.name not in taken:
            taken.add(node.name)
            continue
        name, k = f"{node.op_type}_{i}", 0
        while name in seen or name in taken:
            k += 1
            name = f"{node.op_type}_{i}_{k}"
        node.name = name
        taken.add(name)
    return model


def lower_file(path) -> OpGraph:
    return lower(onnx.load(str(path)))
