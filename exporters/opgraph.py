"""``OpGraph``: the integer op list every integer target shares (DESIGN.md, the integer op set).

Each ``Op`` is a deployable kernel with its activation fused; in a quantized graph every tensor
is the integer codes of one ``QParams`` (the ``Encodings``' numbers, as the QDQ file holds
them). ``exporters.lowering`` builds it from an ONNX model; the integer reference executes it,
the TFLite writer serialises it. Layout is ONNX's (NCHW); the TFLite writer chooses its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Activation(str, Enum):
    NONE = "NONE"
    RELU = "RELU"
    RELU6 = "RELU6"


class OpKind(str, Enum):
    QUANTIZE = "QUANTIZE"
    DEQUANTIZE = "DEQUANTIZE"
    CONV = "CONV_2D"
    DEPTHWISE_CONV = "DEPTHWISE_CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    ADD = "ADD"
    MEAN = "MEAN"
    MAX_POOL = "MAX_POOL_2D"
    STRIDED_SLICE = "STRIDED_SLICE"
    PAD = "PAD"
    RESHAPE = "RESHAPE"
    TRANSPOSE = "TRANSPOSE"
    REQUANTIZE = "REQUANTIZE"  # TFLite's QUANTIZE of an integer tensor onto another grid
    LEAKY_RELU = "LEAKY_RELU"
    PRELU = "PRELU"
    CONCATENATION = "CONCATENATION"
    MUL = "MUL"
    SUB = "SUB"
    AVERAGE_POOL = "AVERAGE_POOL_2D"
    LOGISTIC = "LOGISTIC"  # the elementwise functions TFLite's int8 kernels run as a
    TANH = "TANH"          # 256-entry lookup table (quant.integer_kernels.lut_table)
    GELU = "GELU"
    HARD_SWISH = "HARD_SWISH"
    SOFTMAX = "SOFTMAX"
    FLOAT_ISLAND = "FLOAT_ISLAND"  # DEQUANTIZE -> float op(s) -> QUANTIZE (quant.float_kernels)


@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization of one activation tensor (scale as the file's float32)."""

    scale: float
    zero_point: int
    bits: int
    signed: bool

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1


@dataclass
class Op:
    """One kernel. ``weight``/``bias`` hold integer codes in a quantized graph (``weight_scale``
    per output channel) and floats otherwise; shapes are ONNX's (OIHW, [out, in])."""

    kind: OpKind
    inputs: tuple[str, ...]
    output: str
    name: str
    activation: Activation = Activation.NONE
    weight: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OpGraph:
    ops: list[Op]
    quant: dict[str, QParams]  # integer tensors by name; absent = float32
    input: str
    output: str
    input_shape: tuple[int, ...]  # one sample, NCHW without batch

    @property
    def quantized(self) -> bool:
        return bool(self.quant)

    def float_islands(self) -> list[str]:
        """The layers that run in float between a DEQUANTIZE and a QUANTIZE (no integer
        kernel), as "name (ONNX op)"."""
        return [f"{op.name} ({op.attrs['onnx']})" for op in self.ops
                if op.kind is OpKind.FLOAT_ISLAND]

    def rewrites(self) -> list[str]:
        """The layers lowered in another exact form (a Conv3d as 2-D ops), as "name (form)"."""
        return [f"{op.name} ({op.attrs['rewritten_from']})" for op in self.ops
                if "rewritten_from" in op.attrs]


def _pooled(size: int, kernel: int, stride: int, dilation: int, pad: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def infer_shapes(graph: OpGraph, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Every tensor's NCHW shape for ``batch`` samples."""
    shapes: dict[str, tuple[int, ...]] = {graph.input: (batch, *graph.input_shape)}
    for op in graph.ops:
        x = shapes[op.inputs[0]]
        if op.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.MAX_POOL,
                       OpKind.AVERAGE_POOL):
            kernel = op.weight.shape[2:] if op.weight is not None else op.attrs["kernel"]
            t, l, b, r = op.attrs["pads"]
            dil = op.attrs.get("dilations", (1, 1))
            s = op.attrs["strides"]
            c = op.weight.shape[0] if op.weight is not None else x[1]
            out = (x[0], c, _pooled(x[2], kernel[0], s[0], dil[0], t + b),
                   _pooled(x[3], kernel[1], s[1], dil[1], l + r))
        elif op.kind is OpKind.FULLY_CONNECTED:
            out = (*x[:-1], op.weight.shape[0])
        elif op.kind is OpKind.MEAN:
            out = (x[0], x[1], 1, 1)
        elif op.kind is OpKind.STRIDED_SLICE:
            dims = list(x)
            for start, end, axis, step in zip(*(op.attrs[k] for k in
                                                ("starts", "ends", "axes", "steps"))):
                dims[axis] = len(range(dims[axis])[slice(start, end, step)])
            out = tuple(dims)
        elif op.kind is OpKind.PAD:
            half = len(op.attrs["pads"]) // 2
            out = tuple(d + a + b for d, a, b in zip(x, op.attrs["pads"][:half],
                                                     op.attrs["pads"][half:]))
        elif op.kind is OpKind.RESHAPE:
            out = (x[0], *op.attrs["sample_shape"])
        elif op.kind is OpKind.TRANSPOSE:
            out = tuple(x[p] for p in op.attrs["perm"])
        elif op.kind is OpKind.CONCATENATION:
            axis = op.attrs["axis"]
            out = list(x)
            out[axis] = sum(shapes[i][axis] for i in op.inputs)
        elif op.kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL):
            out = np.broadcast_shapes(*(shapes[i] for i in op.inputs),
                                      *(() if op.weight is None else (op.weight.shape,)))
        else:
            out = x
        shapes[op.output] = tuple(int(d) for d in out)
    return shapes
