"""TFLite exporter: float32 and full-integer int8 ``.tflite`` written directly from the
lowered ONNX model (``exporters.lowering``), with the flatbuffer schema that ships with LiteRT.

Why write the flatbuffer ourselves rather than convert: both converter routes re-derive the
numbers. litert-torch's PT2E flow calibrates its own observers, and onnx2tf + TensorFlow's
converter re-quantizes from a representative dataset; neither can be told "use these scales".
Here every int8 scale and zero point is the ``Encodings``' (read from the QDQ file), so the
integer reference, the QDQ model and the ``.tflite`` are one model. Mapping:
- layouts: every 4-D tensor a spatial kernel reads or writes is NHWC (OHWI conv filters,
  1HWC depthwise filters); other tensors keep whatever axis order makes the ops around them
  cheapest, so a ConvNeXt-style ``permute(0, 2, 3, 1)`` before a linear layer costs no
  TRANSPOSE at all (each tensor's layout is chosen as it is produced; a TRANSPOSE is added only
  where a consumer needs another);
- uint8 activation encodings become int8 with ``zero_point - 128``: the same real numbers and
  the same integer arithmetic (every kernel works on ``q - zero_point``), as TFLite requires
  int8 for per-channel kernels;
- ONNX padding that TFLite's SAME does not reproduce (stride 2 pads top/left) becomes an
  explicit PAD (which pads with the zero point, i.e. real 0) + VALID;
- float input and output by default (QUANTIZE / DEQUANTIZE inside the model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from convdeploy.errors import ConvdeployError
from convdeploy.files import write_bytes_atomic

from .artifact import Artifact, ArtifactFormat
from .lowering import Activation, LoweringError, Op, OpGraph, OpKind, QParams, infer_shapes, \
    lower_file

NHWC = (0, 2, 3, 1)  # where TFLite keeps the ONNX axes of a 4-D activation
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "MEAN": 2,
             "MAX_POOL_2D": 2, "STRIDED_SLICE": 2, "PAD": 2, "RESHAPE": 1, "QUANTIZE": 2,
             "DEQUANTIZE": 2, "TRANSPOSE": 2, "MUL": 2, "SUB": 2, "CONCATENATION": 2,
             "AVERAGE_POOL_2D": 2, "LOGISTIC": 2, "TANH": 2, "GELU": 2, "HARD_SWISH": 1,
             "LEAKY_RELU": 2, "PRELU": 1, "SOFTMAX": 2}
SPATIAL = {OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.MAX_POOL, OpKind.AVERAGE_POOL,
           OpKind.MEAN}
ACTIVATIONS = {OpKind.LOGISTIC, OpKind.TANH, OpKind.HARD_SWISH}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _default_layout(rank: int) -> tuple[int, ...]:
    """The layout a graph input/output has in TFLite: NHWC for 4-D, as it is otherwise."""
    return NHWC if rank == 4 else tuple(range(rank))


def _channels_last(rank: int) -> tuple[int, ...]:
    """(N, spatial axes..., C): NHWC for 4-D, (N, T, H, W, C) for 5-D."""
    return (0, *range(2, rank), 1)


def _inverse(perm) -> tuple[int, ...]:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def _same_order(shape: tuple[int, ...], a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Do layouts ``a`` and ``b`` hold the elements in the same memory order? (True when
    they differ only in where size-1 axes sit.)"""
    return [i for i in a if shape[i] != 1] == [i for i in b if shape[i] != 1]


def _same_padding(size: int, kernel: int, stride: int, dilation: int, pad_lo: int,
                  pad_hi: int) -> bool:
    """Does TFLite's SAME padding compute what the explicit ONNX pads compute?"""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    onnx_out = (size + pad_lo + pad_hi - eff) // stride + 1
    return onnx_out == out and pad_lo == total // 2


class _Writer:
    def __init__(self, graph: OpGraph) -> None:
        self.s = _schema()
        self.graph = graph
        self.shapes = infer_shapes(graph)
        self.tensors: list = []
        self.buffers = [self.s.BufferT()]  # buffer 0: the empty sentinel
        self.index: dict[tuple[str, tuple[int, ...]], int] = {}  # (value, layout) -> tensor
        self.layout: dict[str, tuple[int, ...]] = {}  # where each value was produced
        self.derived: dict[str, QParams] = {}  # quantization of tensors the writer adds
        self.codes: dict[tuple[int, int], int] = {}
        self.operators: list = []

    # tensors --------------------------------------------------------------------------
    def _quant(self, scales, zero_points, axis: int = 0):
        q = self.s.QuantizationParametersT()
        q.scale = [float(np.float32(s)) for s in scales]
        q.zeroPoint = [int(z) for z in zero_points]
        q.quantizedDimension = axis
        return q

    def _add_tensor(self, name: str, shape: list[int], ttype: int, data: np.ndarray | None = None,
                    quant=None, dynamic_batch: bool = False) -> int:
        t = self.s.TensorT()
        t.name, t.shape, t.type, t.quantization = name, list(shape), ttype, quant
        if dynamic_batch:
            t.shapeSignature = [-1, *shape[1:]]
        if data is not None:
            buf = self.s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def _new(self, name: str, layout: tuple[int, ...], label: str | None = None,
             shape: tuple[int, ...] | None = None) -> int:
        """A new int8/float32 tensor holding value ``name`` (its quantization) in ``layout``."""
        q = self.graph.quant.get(name, self.derived.get(name))
        shape = shape or self.shapes[name]
        tfl_shape = [shape[i] for i in layout]
        label = label or name
        if q is None:
            return self._add_tensor(label, tfl_shape, self.s.TensorType.FLOAT32,
                                    dynamic_batch=True)
        zp = q.zero_point - 128 if not q.signed else q.zero_point
        return self._add_tensor(label, tfl_shape, self.s.TensorType.INT8,
                                quant=self._quant([q.scale], [zp]), dynamic_batch=True)

    def output(self, name: str, layout: tuple[int, ...]) -> int:
        """The tensor an op writes value ``name`` into, in ``layout``."""
        self.layout[name] = tuple(layout)
        idx = self._new(name, tuple(layout))
        self.index[(name, tuple(layout))] = idx
        return idx

    def layout_of(self, name: str) -> tuple[int, ...]:
        """Where value ``name`` was produced (the graph input: the default layout)."""
        return self.layout.setdefault(name, _default_layout(len(self.shapes[name])))

    def tensor(self, name: str, layout: tuple[int, ...] | None = None) -> int:
        """The tensor holding value ``name`` in ``layout`` (default: where it was produced);
        a TRANSPOSE from its own layout is added on first need."""
        have = self.layout_of(name)
        if (name, have) not in self.index:  # the graph input
            self.index[(name, have)] = self._new(name, have)
        layout = tuple(layout) if layout is not None else have
        if (name, layout) in self.index:
            return self.index[(name, layout)]
        perm = [_inverse(have)[axis] for axis in layout]
        idx = self._new(name, layout, f"{name}.{''.join(map(str, layout))}")
        self.operator("TRANSPOSE", [self.index[(name, have)],
                                    self.const_int32(f"{name}.perm{len(self.tensors)}", perm)],
                      [idx], "TransposeOptions", self.s.TransposeOptionsT())
        self.index[(name, layout)] = idx
        return idx

    def const_int32(self, name: str, values) -> int:
        arr = np.asarray(values, dtype=np.int32)
        return self._add_tensor(name, list(arr.shape), self.s.TensorType.INT32, arr)

    def weight(self, op: Op, data: np.ndarray, axis: int) -> int:
        if op.weight_scale is None:
            return self._add_tensor(f"{op.name}.weight", list(data.shape),
                                    self.s.TensorType.FLOAT32, data.astype(np.float32))
        scales = np.broadcast_to(op.weight_scale, (data.shape[axis],))
        return self._add_tensor(f"{op.name}.weight", list(data.shape), self.s.TensorType.INT8,
                                data.astype(np.int8),
                                self._quant(scales, np.zeros(len(scales)), axis))

    def bias(self, op: Op, in_q: QParams | None) -> int:
        channels = op.weight.shape[0]
        if op.weight_scale is None:
            values = op.bias if op.bias is not None else np.zeros(channels)
            return self._add_tensor(f"{op.name}.bias", [channels], self.s.TensorType.FLOAT32,
                                    np.asarray(values, dtype=np.float32))
        values = op.bias if op.bias is not None else np.zeros(channels, dtype=np.int64)
        w_scale = np.broadcast_to(np.asarray(op.weight_scale, dtype=np.float32), (channels,))
        scales = np.float32(in_q.scale) * w_scale
        return self._add_tensor(f"{op.name}.bias", [channels], self.s.TensorType.INT32,
                                np.asarray(values, dtype=np.int32),
                                self._quant(scales, np.zeros(channels)))

    # operators ------------------------------------------------------------------------
    def operator(self, code_name: str, inputs: list[int], outputs: list[int],
                 options_name: str | None = None, options=None) -> None:
        code = getattr(self.s.BuiltinOperator, code_name)
        version = _VERSIONS.get(code_name, 1) if self.graph.quantized else 1
        key = (code, version)
        self.codes.setdefault(key, len(self.codes))
        op = self.s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.codes[key], inputs, outputs
        if options is not None:
            op.builtinOptionsType = getattr(self.s.BuiltinOptions, options_name)
            op.builtinOptions = options
        self.operators.append(op)

    def _padding(self, op: Op, src: int, kernel) -> tuple[int, int]:
        """(input tensor, TFLite padding): SAME when it matches, else an explicit PAD."""
        shape = self.shapes[op.inputs[0]]
        t, l, b, r = op.attrs["pads"]
        if not any((t, l, b, r)):
            return src, self.s.Padding.VALID
        dil = op.attrs.get("dilations", (1, 1))
        st = op.attrs["strides"]
        if _same_padding(shape[2], kernel[0], st[0], dil[0], t, b) and \
                _same_padding(shape[3], kernel[1], st[1], dil[1], l, r):
            return src, self.s.Padding.SAME
        if op.kind in (OpKind.MAX_POOL, OpKind.AVERAGE_POOL):
            raise LoweringError(f"{op.name}: pooling padding that TFLite's SAME does not "
                                "reproduce")
        padded = (shape[0], shape[1], shape[2] + t + b, shape[3] + l + r)
        name = f"{op.inputs[0]}.padded_for.{op.name}"
        if op.inputs[0] in self.graph.quant:
            self.derived[name] = self.graph.quant[op.inputs[0]]
        out = self._new(name, NHWC, shape=padded)
        pads = self.const_int32(f"{name}.paddings", [[0, 0], [t, b], [l, r], [0, 0]])
        self.operator("PAD", [src, pads], [out], "PadOptions", self.s.PadOptionsT())
        return out, self.s.Padding.VALID

    def _activation_type(self, op: Op) -> int:
        a = self.s.ActivationFunctionType
        return {Activation.NONE: a.NONE, Activation.RELU: a.RELU,
                Activation.RELU6: a.RELU6}[op.activation]

    def spatial(self, op: Op) -> None:
        """Convolutions, pools and the spatial mean: NHWC in, NHWC out."""
        s, act = self.s, self._activation_type(op)
        src, dst = self.tensor(op.inputs[0], NHWC), self.output(op.output, NHWC)
        if op.kind is OpKind.MEAN:
            opts = s.ReducerOptionsT()
            opts.keepDims = True
            axes = self.const_int32(f"{op.name}.axes", [1, 2])
            self.operator("MEAN", [src, axes], [dst], "ReducerOptions", opts)
            return
        if op.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV):
            self.conv(op, src, dst, act)
            return
        src, padding = self._padding(op, src, op.attrs["kernel"])
        opts = s.Pool2DOptionsT()
        opts.padding = padding
        opts.strideH, opts.strideW = op.attrs["strides"]
        opts.filterHeight, opts.filterWidth = op.attrs["kernel"]
        opts.fusedActivationFunction = act
        self.operator(op.kind.value, [src], [dst], "Pool2DOptions", opts)

    def conv(self, op: Op, src: int, dst: int, act: int) -> None:
        kernel = op.weight.shape[2:]
        src, padding = self._padding(op, src, kernel)
        in_q = self.graph.quant.get(op.inputs[0])
        if op.kind is OpKind.CONV:
            w = self.weight(op, op.weight.transpose(0, 2, 3, 1), 0)
            opts, name, code = self.s.Conv2DOptionsT(), "Conv2DOptions", "CONV_2D"
        else:
            w = self.weight(op, op.weight.transpose(1, 2, 3, 0), 3)
            opts, name, code = (self.s.DepthwiseConv2DOptionsT(), "DepthwiseConv2DOptions",
                                "DEPTHWISE_CONV_2D")
            opts.depthMultiplier = 1
        opts.padding = padding
        opts.strideH, opts.strideW = op.attrs["strides"]
        opts.dilationHFactor, opts.dilationWFactor = op.attrs["dilations"]
        opts.fusedActivationFunction = act
        self.operator(code, [src, w, self.bias(op, in_q)], [dst], name, opts)

    def last_axis_op(self, op: Op) -> None:
        """FULLY_CONNECTED and SOFTMAX work over the last ONNX axis, which must be TFLite's
        last too; other axes stay where they are."""
        rank = len(self.shapes[op.inputs[0]])
        layout = self.layout_of(op.inputs[0])
        if layout[-1] != rank - 1:
            layout = tuple(range(rank))
        src, dst = self.tensor(op.inputs[0], layout), self.output(op.output, layout)
        if op.kind is OpKind.SOFTMAX:
            opts = self.s.SoftmaxOptionsT()
            opts.beta = 1.0
            self.operator("SOFTMAX", [src], [dst], "SoftmaxOptions", opts)
            return
        opts = self.s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = self._activation_type(op)
        opts.keepNumDims = rank > 2
        w = self.weight(op, op.weight, 0)
        self.operator("FULLY_CONNECTED", [src, w, self.bias(op, self.graph.quant.get(
            op.inputs[0]))], [dst], "FullyConnectedOptions", opts)

    def elementwise(self, op: Op) -> None:
        """Ops that work in any layout: the output keeps the first input's."""
        s = self.s
        layout = self.layout_of(op.inputs[0])
        srcs = [self.tensor(i, layout) for i in op.inputs]
        if op.weight is not None:  # ADD/SUB/MUL of a constant
            srcs.insert(0 if op.attrs.get("constant_first") else 1, self.constant(op, layout))
        dst = self.output(op.output, layout)
        if op.kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL):
            self.arithmetic(op.kind.value, srcs, dst, self._activation_type(op))
        elif op.kind in (OpKind.QUANTIZE, OpKind.REQUANTIZE):
            self.operator("QUANTIZE", srcs, [dst])
        elif op.kind is OpKind.DEQUANTIZE:
            self.operator("DEQUANTIZE", srcs, [dst])
        elif op.kind in ACTIVATIONS:
            self.operator(op.kind.value, srcs, [dst])
        elif op.kind is OpKind.LEAKY_RELU:
            opts = s.LeakyReluOptionsT()
            opts.alpha = op.attrs["alpha"]
            self.operator("LEAKY_RELU", srcs, [dst], "LeakyReluOptions", opts)
        elif op.kind is OpKind.PRELU:
            self.operator("PRELU", srcs, [dst])  # the slope: the constant operand
        elif op.kind is OpKind.GELU:
            opts = s.GeluOptionsT()
            opts.approximate = bool(op.attrs.get("approximate"))
            self.operator("GELU", srcs, [dst], "GeluOptions", opts)
        elif op.kind is OpKind.CONCATENATION:
            opts = s.ConcatenationOptionsT()
            opts.axis = layout.index(op.attrs["axis"])
            self.operator("CONCATENATION", srcs, [dst], "ConcatenationOptions", opts)
        elif op.kind is OpKind.STRIDED_SLICE:
            self.strided_slice(op, srcs[0], dst, layout)
        elif op.kind is OpKind.PAD:
            half = len(op.attrs["pads"]) // 2
            pairs = list(zip(op.attrs["pads"][:half], op.attrs["pads"][half:]))
            self.operator("PAD", [srcs[0], self.const_int32(f"{op.name}.paddings",
                                                            [pairs[i] for i in layout])],
                          [dst], "PadOptions", s.PadOptionsT())
        else:  # pragma: no cover - lowering admits only the kinds handled here
            raise LoweringError(f"{op.name}: no TFLite form for {op.kind.value}")

    def arithmetic(self, code: str, srcs: list[int], dst: int, activation: int = 0) -> None:
        """ADD, SUB or MUL (int8 or float32), with a fused activation."""
        title = code.title()
        opts = getattr(self.s, f"{title}OptionsT")()
        opts.fusedActivationFunction = activation
        self.operator(code, srcs, [dst], f"{title}Options", opts)

    def constant(self, op: Op, layout) -> int:
        """An elementwise op's constant operand, rank-aligned and in the op's layout: int8
        codes with their per-tensor scale (float32 in a float graph)."""
        data = np.asarray(op.weight)
        data = data.reshape((1,) * (len(layout) - data.ndim) + data.shape).transpose(layout)
        if op.weight_scale is None:
            return self._add_tensor(f"{op.name}.constant", list(data.shape),
                                    self.s.TensorType.FLOAT32, data.astype(np.float32))
        scale = float(np.asarray(op.weight_scale).reshape(-1)[0])
        return self._add_tensor(f"{op.name}.constant", list(data.shape), self.s.TensorType.INT8,
                                data.astype(np.int8), self._quant([scale], [0]))

    def strided_slice(self, op: Op, src: int, dst: int, layout) -> None:
        shape = self.shapes[op.inputs[0]]
        begin, end, strides = [0] * len(shape), list(shape), [1] * len(shape)
        for start, stop, axis, step in zip(*(op.attrs[k] for k in
                                             ("starts", "ends", "axes", "steps"))):
            begin[axis], end[axis], strides[axis] = start, min(stop, shape[axis]), step
        if self._decimation(op, begin, end, strides, layout):
            self.decimate(op, src, dst, strides[-2:])
            return
        opts = self.s.StridedSliceOptionsT()
        opts.beginMask = opts.endMask = 1 << layout.index(0)  # the batch: all of it
        self.operator("STRIDED_SLICE", [src] + [
            self.const_int32(f"{op.name}.{k}", [v[i] for i in layout])
            for k, v in (("begin", begin), ("end", end), ("strides", strides))],
            [dst], "StridedSliceOptions", opts)

    def _decimation(self, op: Op, begin, end, strides, layout) -> bool:
        """Is the slice ``x[..., ::sh, ::sw]`` of a channels-last activation (every other axis
        whole)? XNNPACK delegates no STRIDED_SLICE with a step, so the graph would split."""
        shape, rank = self.shapes[op.inputs[0]], len(begin)
        whole = all(b == 0 and e >= d for b, e, d in zip(begin, end, shape))
        return (rank >= 4 and tuple(layout) == _channels_last(rank) and whole
                and all(s == 1 for s in strides[:-2]) and max(strides[-2:]) > 1
                and self.graph.quant.get(op.inputs[0]) == self.graph.quant.get(op.output))

    def decimate(self, op: Op, src: int, dst: int, steps) -> None:
        """``x[..., ::sh, ::sw]`` as a 1x1 DEPTHWISE_CONV_2D of stride (sh, sw) whose weights
        are 1 (int8 code 1, scale 1.0; bias 0; output encoding = input encoding): the
        requantization multiplier is exactly 1, so every code passes unchanged (float: x * 1.0
        + 0.0). Leading axes beyond NHWC are merged into the batch by free RESHAPEs."""
        in_shape, out_shape = self.tensors[src].shape, self.tensors[dst].shape
        channels = int(in_shape[-1])
        if len(in_shape) > 4:
            src = self._batch_folded(op.inputs[0], src, f"{op.name}.folded_in")
            conv_out = self._new(op.output, NHWC, f"{op.name}.folded_out",
                                 shape=(int(np.prod(out_shape[:-3])), channels,
                                        *(int(d) for d in out_shape[-3:-1])))
            conv_out_dst = conv_out
        else:
            conv_out_dst = dst
        quantized = op.inputs[0] in self.graph.quant
        ttype = self.s.TensorType.INT8 if quantized else self.s.TensorType.FLOAT32
        ones = np.ones((1, 1, 1, channels), dtype=np.int8 if quantized else np.float32)
        w = self._add_tensor(f"{op.name}.ones", [1, 1, 1, channels], ttype, ones,
                             self._quant(np.ones(channels), np.zeros(channels), 3)
                             if quantized else None)
        if quantized:
            scale = np.float32(self.graph.quant[op.inputs[0]].scale)
            b = self._add_tensor(f"{op.name}.zero_bias", [channels], self.s.TensorType.INT32,
                                 np.zeros(channels, dtype=np.int32),
                                 self._quant(np.full(channels, scale), np.zeros(channels)))
        else:
            b = self._add_tensor(f"{op.name}.zero_bias", [channels], self.s.TensorType.FLOAT32,
                                 np.zeros(channels, dtype=np.float32))
        opts = self.s.DepthwiseConv2DOptionsT()
        opts.padding, opts.depthMultiplier = self.s.Padding.VALID, 1
        opts.strideH, opts.strideW = (int(v) for v in steps)
        opts.dilationHFactor = opts.dilationWFactor = 1
        self.operator("DEPTHWISE_CONV_2D", [src, w, b], [conv_out_dst],
                      "DepthwiseConv2DOptions", opts)
        if conv_out_dst != dst:
            self._reshape_op(conv_out, dst, [-1, *out_shape[1:]], f"{op.name}.unfold")

    def _batch_folded(self, name: str, src: int, label: str) -> int:
        """A channels-last tensor of rank > 4 with its leading axes merged into the batch."""
        shape = [int(d) for d in self.tensors[src].shape]
        target = [-1, *shape[-3:]]
        folded = self._new(name, NHWC, label,
                           shape=(int(np.prod(shape[:-3])), shape[-1], *shape[-3:-1]))
        self._reshape_op(src, folded, target, f"{label}.shape")
        return folded

    def _reshape_op(self, src: int, dst: int, target: list[int], shape_name: str) -> None:
        """A RESHAPE of ``src`` into ``dst`` (``target``: -1 then the trailing dims)."""
        opts = self.s.ReshapeOptionsT()
        opts.newShape = target
        self.operator("RESHAPE", [src, self.const_int32(shape_name, target)], [dst],
                      "ReshapeOptions", opts)

    def transpose(self, op: Op) -> None:
        """Usually free: the output takes the layout in which TFLite's memory order is the
        input's (``L_out = perm^-1 o L_in``), so the same tensor serves; a layout change that
        a consumer needs becomes a TRANSPOSE there."""
        src_name = op.inputs[0]
        have = self.layout_of(src_name)
        idx = self.tensor(src_name, have)
        inv = _inverse(op.attrs["perm"])
        layout = tuple(inv[axis] for axis in have)
        if self.graph.quant.get(src_name) != self.graph.quant.get(op.output):
            raise LoweringError(f"{op.name}: a transpose that changes the quantization")
        self.layout[op.output] = layout
        self.index[(op.output, layout)] = idx

    def reshape(self, op: Op) -> None:
        """RESHAPE reorders elements in ONNX's order: the input is read in its ONNX axis order
        (a TRANSPOSE unless its layout already has that memory order), the output is written
        in ONNX order, or NHWC when that is the same memory order. A reshape that keeps the
        channel axis whole (only the axes after it merge or split, as in the (2+1)D rewrite's
        frame stacking) is the same reshape in channels-last memory: no TRANSPOSE."""
        shape, out_shape = self.shapes[op.inputs[0]], self.shapes[op.output]
        rank, out_rank = len(shape), len(out_shape)
        if min(rank, out_rank) >= 3 and shape[1] == out_shape[1]:
            src = self.tensor(op.inputs[0], _channels_last(rank))
            layout = _channels_last(out_rank)
        else:
            have = self.layout_of(op.inputs[0])
            onnx_order = tuple(range(rank))
            src = self.tensor(op.inputs[0], have if _same_order(shape, have, onnx_order)
                              else onnx_order)
            layout = _default_layout(out_rank)
            if not _same_order(out_shape, layout, tuple(range(out_rank))):
                layout = tuple(range(out_rank))
        dst = self.output(op.output, layout)
        self._reshape_op(src, dst, [-1, *self.tensors[dst].shape[1:]], f"{op.name}.shape")

    def write_op(self, op: Op) -> None:
        if op.kind in SPATIAL:
            self.spatial(op)
        elif op.kind in (OpKind.FULLY_CONNECTED, OpKind.SOFTMAX):
            self.last_axis_op(op)
        elif op.kind is OpKind.TRANSPOSE:
            self.transpose(op)
        elif op.kind is OpKind.RESHAPE:
            self.reshape(op)
        elif op.kind is OpKind.FLOAT_ISLAND:
            self.island(op)
        else:
            self.elementwise(op)

    # float islands ----------------------------------------------------------------------
    def _float(self, label: str, shape: tuple[int, ...], layout) -> int:
        return self._add_tensor(label, [shape[i] for i in layout], self.s.TensorType.FLOAT32,
                                dynamic_batch=True)

    def _const_float(self, name: str, values: np.ndarray, shape: list[int]) -> int:
        arr = np.asarray(values, dtype=np.float32).reshape(shape)
        return self._add_tensor(name, shape, self.s.TensorType.FLOAT32, arr)

    def island(self, op: Op) -> None:
        """DEQUANTIZE -> the float ops of ``quant.float_kernels`` -> QUANTIZE, in the input's
        layout (a float graph: the float ops alone)."""
        name = op.inputs[0]
        shape = self.shapes[name]
        layout = self.layout_of(name)
        x = self.tensor(name, layout)
        if name in self.graph.quant:
            f = self._float(f"{name}.float.{op.name}", shape, layout)
            self.operator("DEQUANTIZE", [x], [f])
            x = f
        quantized = op.output in self.graph.quant
        dst = self.output(op.output, layout)
        last = self._float(f"{op.output}.float", shape, layout) if quantized else dst
        self.layer_norm(op, x, last, shape, layout)
        if quantized:
            self.operator("QUANTIZE", [last], [dst])

    def layer_norm(self, op: Op, x: int, out: int, shape, layout) -> None:
        """MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL, MUL, ADD (``float_kernels.layer_norm``)."""
        s = self.s
        axis = layout.index(op.attrs["axis"])
        reduced = tuple(1 if i == op.attrs["axis"] else d for i, d in enumerate(shape))
        axes = self.const_int32(f"{op.name}.axes", [axis])

        def mean(src: int, label: str) -> int:
            t = self._float(f"{op.name}.{label}", reduced, layout)
            opts = s.ReducerOptionsT()
            opts.keepDims = True
            self.operator("MEAN", [src, axes], [t], "ReducerOptions", opts)
            return t

        def binary(code: str, a: int, b: int, label: str, dst: int | None = None,
                   like=shape) -> int:
            t = dst if dst is not None else self._float(f"{op.name}.{label}", like, layout)
            self.arithmetic(code, [a, b], t)
            return t

        centred = binary("SUB", x, mean(x, "mean"), "centred")
        variance = mean(binary("MUL", centred, centred, "squared"), "variance")
        eps = self._const_float(f"{op.name}.epsilon", [op.attrs["epsilon"]], [1])
        shifted = binary("ADD", variance, eps, "variance_eps", like=reduced)
        inv = self._float(f"{op.name}.rsqrt", reduced, layout)
        self.operator("RSQRT", [shifted], [inv])
        steps = [("MUL", op.attrs.get("scale")), ("ADD", op.attrs.get("bias"))]
        steps = [(code, v) for code, v in steps if v is not None]
        y = binary("MUL", centred, inv, "normalised", out if not steps else None)
        const_shape = [1] * len(shape)
        const_shape[axis] = shape[op.attrs["axis"]]
        for i, (code, values) in enumerate(steps):
            c = self._const_float(f"{op.name}.{code.lower()}_const", values, const_shape)
            y = binary(code, y, c, f"affine{i}", out if i == len(steps) - 1 else None)

    def build(self) -> bytes:
        import flatbuffers

        for op in self.graph.ops:
            self.write_op(op)
        s = self.s
        out = self.graph.output
        output = self.tensor(out, _default_layout(len(self.shapes[out])))
        inner = self.index[(out, self.layout_of(out))]
        if inner != output:  # produced in another layout: the graph output keeps the name
            self.tensors[inner].name, self.tensors[output].name = (self.tensors[output].name,
                                                                   self.tensors[inner].name)
        sub = s.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        inp = self.graph.input
        sub.inputs = [self.index[(inp, self.layout[inp])]]
        sub.outputs = [output]
        model = s.ModelT()
        model.version, model.description = 3, "convdeploy"
        model.subgraphs, model.buffers = [sub], self.buffers
        codes = []
        for (code, version), _ in sorted(self.codes.items(), key=lambda kv: kv[1]):
            oc = s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
            codes.append(oc)
        model.operatorCodes = codes
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def tflite_bytes(graph: OpGraph) -> bytes:
    """Serialise a lowered graph (float or quantized) as a TFLite flatbuffer."""
    return _Writer(graph).build()


class TfliteExporter:
    """``Exporter``: an ONNX artifact (float, or QDQ with the Encodings) -> ``.tflite``."""

    format = ArtifactFormat.TFLITE

    def export(self, source: Artifact, directory: Path) -> Artifact:
        try:
            graph = lower_file(source.path)
            data = tflite_bytes(graph)
        except LoweringError as exc:
            raise ConvdeployError(f"{source.path.name} cannot be written as TFLite: {exc}",
                                  fix="drop mobile-litert from --targets, or change that layer")
        path = Path(directory) / (source.path.stem + ".tflite")
        write_bytes_atomic(path, data)
        return Artifact(name=path.stem, format=ArtifactFormat.TFLITE,
                        precision=source.precision, path=path, encodings=source.encodings,
                        input_name=source.input_name, output_name=source.output_name,
                        input_shape=source.input_shape, output_scale=source.output_scale,
                        details={"layout": "NHWC", "source": source.path.name,
                                 "float_islands": graph.float_islands(),
                                 "rewritten_2d": graph.rewrites(),
                                 **({"weight_container": source.details["weight_container"]}
                                    if "weight_container" in source.details else {})},
                        scheme=source.scheme)
