"""TFLite exporter: float32 and full-integer int8 ``.tflite`` written directly from the
lowered ONNX model (``exporters.lowering``), with the flatbuffer schema that ships with LiteRT.

Why write the flatbuffer ourselves rather than convert: both converter routes re-derive the
numbers. litert-torch's PT2E flow calibrates its own observers, and onnx2tf + TensorFlow's
converter re-quantizes from a representative dataset; neither can be told "use these scales".
Here every int8 scale and zero point is the ``Encodings``' (read from the QDQ file), so the
integer reference, the QDQ model and the ``.tflite`` are one model. Mapping:
- layout NCHW -> NHWC (activations, OHWI conv filters, 1HWC depthwise filters);
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

NHWC = (0, 2, 3, 1)  # NCHW -> NHWC permutation
AXIS_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "MEAN": 2,
             "MAX_POOL_2D": 2, "STRIDED_SLICE": 2, "PAD": 2, "RESHAPE": 1, "QUANTIZE": 2,
             "DEQUANTIZE": 2, "TRANSPOSE": 2, "MUL": 2, "SUB": 2, "CONCATENATION": 2,
             "AVERAGE_POOL_2D": 2, "LOGISTIC": 2, "TANH": 2, "GELU": 2, "HARD_SWISH": 1}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _nhwc(shape: tuple[int, ...]) -> list[int]:
    return [shape[i] for i in NHWC] if len(shape) == 4 else list(shape)


def _layout(rank: int) -> tuple[int, ...]:
    """Where TFLite keeps a tensor's ONNX axes: NHWC for 4-D activations, as is otherwise."""
    return NHWC if rank == 4 else tuple(range(rank))


def _inverse(perm: tuple[int, ...]) -> list[int]:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return out


def _layout_free(shape: tuple[int, ...]) -> bool:
    """NHWC and NCHW hold the elements in the same memory order (not 4-D, one channel, or
    one pixel), so a RESHAPE needs no TRANSPOSE around it."""
    return len(shape) != 4 or shape[1] == 1 or shape[2] * shape[3] == 1


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
        self.index: dict[str, int] = {}
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

    def activation(self, name: str, shape: tuple[int, ...] | None = None, *,
                   nhwc: bool = True) -> int:
        """The tensor of a graph value (created on first use), NHWC unless ``nhwc=False``,
        int8 or float32; ``shape`` (NCHW) for tensors the writer adds."""
        if name in self.index:
            return self.index[name]
        q = self.graph.quant.get(name, self.derived.get(name))
        shape = shape or self.shapes[name]
        shape = _nhwc(shape) if nhwc else list(shape)
        if q is None:
            idx = self._add_tensor(name, shape, self.s.TensorType.FLOAT32, dynamic_batch=True)
        else:
            zp = q.zero_point - 128 if not q.signed else q.zero_point
            idx = self._add_tensor(name, shape, self.s.TensorType.INT8,
                                   quant=self._quant([q.scale], [zp]), dynamic_batch=True)
        self.index[name] = idx
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
        out = self.activation(name, padded)
        pads = self.const_int32(f"{name}.paddings", [[0, 0], [t, b], [l, r], [0, 0]])
        self.operator("PAD", [src, pads], [out], "PadOptions", self.s.PadOptionsT())
        return out, self.s.Padding.VALID

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

    def write_op(self, op: Op) -> None:
        s = self.s
        act = {Activation.NONE: s.ActivationFunctionType.NONE,
               Activation.RELU: s.ActivationFunctionType.RELU,
               Activation.RELU6: s.ActivationFunctionType.RELU6}[op.activation]
        src = self.activation(op.inputs[0])
        dst = self.activation(op.output)
        if op.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV):
            self.conv(op, src, dst, act)
        elif op.kind is OpKind.FULLY_CONNECTED:
            opts = s.FullyConnectedOptionsT()
            opts.fusedActivationFunction = act
            w = self.weight(op, op.weight, 0)
            self.operator("FULLY_CONNECTED", [src, w, self.bias(op, self.graph.quant.get(
                op.inputs[0]))], [dst], "FullyConnectedOptions", opts)
        elif op.kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL):
            title = op.kind.value.title()
            opts = getattr(s, f"{title}OptionsT")()
            opts.fusedActivationFunction = act
            self.operator(op.kind.value, [src, self.activation(op.inputs[1])], [dst],
                          f"{title}Options", opts)
        elif op.kind is OpKind.MEAN:
            opts = s.ReducerOptionsT()
            opts.keepDims = True
            axes = self.const_int32(f"{op.name}.axes", [1, 2])
            self.operator("MEAN", [src, axes], [dst], "ReducerOptions", opts)
        elif op.kind is OpKind.MAX_POOL:
            src, padding = self._padding(op, src, op.attrs["kernel"])
            opts = s.Pool2DOptionsT()
            opts.padding = padding
            opts.strideH, opts.strideW = op.attrs["strides"]
            opts.filterHeight, opts.filterWidth = op.attrs["kernel"]
            opts.fusedActivationFunction = act
            self.operator("MAX_POOL_2D", [src], [dst], "Pool2DOptions", opts)
        elif op.kind is OpKind.AVERAGE_POOL:
            src, padding = self._padding(op, src, op.attrs["kernel"])
            opts = s.Pool2DOptionsT()
            opts.padding = padding
            opts.strideH, opts.strideW = op.attrs["strides"]
            opts.filterHeight, opts.filterWidth = op.attrs["kernel"]
            opts.fusedActivationFunction = act
            self.operator("AVERAGE_POOL_2D", [src], [dst], "Pool2DOptions", opts)
        else:
            self.write_layout_op(op, src, dst)

    def write_layout_op(self, op: Op, src: int, dst: int) -> None:
        s = self.s
        shape = self.shapes[op.inputs[0]]
        if op.kind in (OpKind.QUANTIZE, OpKind.REQUANTIZE):
            self.operator("QUANTIZE", [src], [dst])
        elif op.kind in (OpKind.LOGISTIC, OpKind.TANH, OpKind.HARD_SWISH):
            self.operator(op.kind.value, [src], [dst])
        elif op.kind is OpKind.GELU:
            opts = s.GeluOptionsT()
            opts.approximate = bool(op.attrs.get("approximate"))
            self.operator("GELU", [src], [dst], "GeluOptions", opts)
        elif op.kind is OpKind.CONCATENATION:
            opts = s.ConcatenationOptionsT()
            opts.axis = AXIS_TO_NHWC[op.attrs["axis"]] if len(shape) == 4 else op.attrs["axis"]
            self.operator("CONCATENATION", [self.activation(i) for i in op.inputs], [dst],
                          "ConcatenationOptions", opts)
        elif op.kind is OpKind.DEQUANTIZE:
            self.operator("DEQUANTIZE", [src], [dst])
        elif op.kind is OpKind.STRIDED_SLICE:
            begin, end, strides = [0] * len(shape), list(_nhwc(shape)), [1] * len(shape)
            for start, stop, axis, step in zip(*(op.attrs[k] for k in
                                                 ("starts", "ends", "axes", "steps"))):
                ax = AXIS_TO_NHWC[axis] if len(shape) == 4 else axis
                begin[ax], end[ax], strides[ax] = start, min(stop, shape[axis]), step
            opts = s.StridedSliceOptionsT()
            opts.beginMask = 1  # batch: from the start, whatever its size
            opts.endMask = 1
            self.operator("STRIDED_SLICE", [src, self.const_int32(f"{op.name}.begin", begin),
                                            self.const_int32(f"{op.name}.end", end),
                                            self.const_int32(f"{op.name}.strides", strides)],
                          [dst], "StridedSliceOptions", opts)
        elif op.kind is OpKind.PAD:
            half = len(op.attrs["pads"]) // 2
            pairs = list(zip(op.attrs["pads"][:half], op.attrs["pads"][half:]))
            if len(shape) == 4:
                pairs = [pairs[i] for i in NHWC]
            self.operator("PAD", [src, self.const_int32(f"{op.name}.paddings", pairs)], [dst],
                          "PadOptions", s.PadOptionsT())
        elif op.kind is OpKind.RESHAPE:
            self.reshape(op, src, dst)
        elif op.kind is OpKind.TRANSPOSE:
            # one TRANSPOSE in TFLite's layouts: output axis i holds ONNX axis perm[L_out[i]],
            # which the input stores at position L_in^-1 of it (L: NHWC for 4-D tensors)
            back = _inverse(_layout(len(shape)))
            out_layout = _layout(len(op.attrs["perm"]))
            perm = [back[op.attrs["perm"][i]] for i in out_layout]
            self.operator("TRANSPOSE", [src, self.const_int32(f"{op.name}.perm", perm)], [dst],
                          "TransposeOptions", s.TransposeOptionsT())
        else:  # pragma: no cover
            raise LoweringError(f"{op.name}: no TFLite form for {op.kind.value}")

    def _relayout(self, name: str, src: int, shape: tuple[int, ...], perm: tuple[int, ...],
                  out_name: str, nhwc: bool) -> int:
        """A TRANSPOSE of ``src`` into a new tensor (same quantization as ``name``)."""
        if name in self.graph.quant:
            self.derived[out_name] = self.graph.quant[name]
        out = self.activation(out_name, shape, nhwc=nhwc)
        self.operator("TRANSPOSE", [src, self.const_int32(f"{out_name}.perm", perm)], [out],
                      "TransposeOptions", self.s.TransposeOptionsT())
        return out

    def reshape(self, op: Op, src: int, dst: int) -> None:
        """RESHAPE reorders elements in ONNX's (NCHW) order: a 4-D tensor whose NHWC memory
        order differs is transposed to NCHW before and back to NHWC after."""
        shape, out_shape = self.shapes[op.inputs[0]], self.shapes[op.output]
        if not _layout_free(shape):
            src = self._relayout(op.inputs[0], src, shape, (0, 3, 1, 2),
                                 f"{op.inputs[0]}.nchw.{op.name}", nhwc=False)
        mid = dst
        if not _layout_free(out_shape):
            if op.output in self.graph.quant:
                self.derived[f"{op.output}.nchw"] = self.graph.quant[op.output]
            mid = self.activation(f"{op.output}.nchw", out_shape, nhwc=False)
        target = [-1, *self.tensors[mid].shape[1:]]
        opts = self.s.ReshapeOptionsT()
        opts.newShape = target
        self.operator("RESHAPE", [src, self.const_int32(f"{op.name}.shape", target)], [mid],
                      "ReshapeOptions", opts)
        if mid != dst:
            self.operator("TRANSPOSE", [mid, self.const_int32(f"{op.name}.to_nhwc",
                                                               (0, 2, 3, 1))], [dst],
                          "TransposeOptions", self.s.TransposeOptionsT())

    def build(self) -> bytes:
        import flatbuffers

        for op in self.graph.ops:
            self.write_op(op)
        s = self.s
        sub = s.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        sub.inputs = [self.index[self.graph.input]]
        sub.outputs = [self.index[self.graph.output]]
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
            data = tflite_bytes(lower_file(source.path))
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
                                 **({"weight_container": source.details["weight_container"]}
                                    if "weight_container" in source.details else {})},
                        scheme=source.scheme)
