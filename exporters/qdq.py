"""Marker ONNX -> QDQ ONNX, with the numbers of the Encodings and nothing else.

The torch exporter writes a ``convdeploy.QPoint(key=...)`` node wherever a quantizer stands.
This pass replaces each one:
- on a constant (weight, bias): the constant becomes integer codes (int8 / int32) and one
  DequantizeLinear (per-channel along the encoding's axis) feeds its consumers;
- on a computed value: QuantizeLinear -> DequantizeLinear.
Keeping this at the ONNX level (rather than relying on torch's fake-quant export) is what lets
every exporter write exactly the Encodings, for any bit width.

4-bit weights are written either as INT4 tensors (opset 21; half the bytes, but runtimes
dequantize them and run float convolutions) or as int8 containers holding codes in [-7, 7]
(``WeightContainer``): the codes, scales and zero points are the same. 4-bit and 16-bit
activations always use their true types (opset 21): a QuantizeLinear to an 8-bit container would
saturate at the container's range, not the encoding's.
"""
from __future__ import annotations

from enum import Enum

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convdeploy.quant.encodings import Encodings, TensorEncoding, TensorKind

MARKER_DOMAIN = "convdeploy"
MARKER_OP = "QPoint"
OPSET_NARROW_TYPES = 21  # INT4/UINT4/INT16/UINT16 in QuantizeLinear/DequantizeLinear


class WeightContainer(str, Enum):
    """How 4-bit weight codes are stored in the ONNX file."""

    INT8 = "int8"  # int8 tensors holding [-7, 7]: integer kernels run them (fastest here)
    INT4 = "int4"  # packed INT4 tensors: half the bytes, dequantized to float by runtimes


def _onnx_type(e: TensorEncoding, container: WeightContainer) -> int:
    """The ONNX element type that stores the codes of ``e``."""
    bits = e.bits
    if bits == 4 and e.kind is TensorKind.WEIGHT and container is WeightContainer.INT8:
        bits = 8
    return {(4, True): TensorProto.INT4, (4, False): TensorProto.UINT4,
            (8, True): TensorProto.INT8, (8, False): TensorProto.UINT8,
            (16, True): TensorProto.INT16, (16, False): TensorProto.UINT16,
            (32, True): TensorProto.INT32}[(bits, e.signed)]


def _int_tensor(values: np.ndarray, name: str, onnx_type: int) -> onnx.TensorProto:
    if onnx_type in (TensorProto.INT4, TensorProto.UINT4):  # packed two per byte by the helper
        return helper.make_tensor(name, onnx_type, values.shape, values.reshape(-1).tolist())
    dtype = helper.tensor_dtype_to_np_dtype(onnx_type)
    return numpy_helper.from_array(np.asarray(values).astype(dtype), name)


def _marker_key(node: onnx.NodeProto) -> str:
    for attr in node.attribute:
        if attr.name == "key":
            return attr.s.decode("utf-8")
    raise ValueError(f"marker node {node.name!r} has no key attribute")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by value name."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, encodings: Encodings,
                 container: WeightContainer) -> None:
        self.model, self.graph, self.enc = model, model.graph, encodings
        self.container = container
        self.narrow_types = False
        self.constants = _constants(self.graph)
        self.params_written: set[str] = set()
        self.new_inits: list[onnx.TensorProto] = []
        self.replaced_constants: set[str] = set()
        self.codes_written: dict[str, tuple[np.ndarray, int]] = {}

    def _qparams(self, key: str, e: TensorEncoding) -> tuple[str, str]:
        """Scale and zero-point initializers of one encoding, written once and shared."""
        scale, zp = f"{key}.scale", f"{key}.zero_point"
        if key not in self.params_written:
            per_axis = e.axis is not None and len(e.scale) > 1
            s = np.asarray(e.scale, dtype=np.float32)
            z = np.asarray(e.zero_point, dtype=np.int64)
            onnx_type = _onnx_type(e, self.container)
            self.narrow_types |= onnx_type in (TensorProto.INT4, TensorProto.UINT4,
                                               TensorProto.INT16, TensorProto.UINT16)
            self.new_inits.append(numpy_helper.from_array(s if per_axis else s.reshape(()), scale))
            self.new_inits.append(_int_tensor(z if per_axis else z.reshape(()), zp, onnx_type))
            self.params_written.add(key)
        return scale, zp

    def _codes(self, src: str, key: str, e: TensorEncoding) -> str:
        """The integer codes of constant ``src`` under encoding ``e``, written once per distinct
        tensor. torch's exporter shares equal constants between consumers (the zero biases of
        freshly folded BatchNorms, say): each quantizer of a shared constant gets its codes under
        its own name, or the one already written when codes and type are the same."""
        codes = e.quantize(self.constants[src])
        onnx_type = _onnx_type(e, self.container)
        for name in (f"{src}.quantized", f"{key}.quantized"):
            written = self.codes_written.get(name)
            if written is None:
                self.codes_written[name] = (codes, onnx_type)
                self.new_inits.append(_int_tensor(codes, name, onnx_type))
                return name
            if written[1] == onnx_type and np.array_equal(written[0], codes):
                return name
        raise ValueError(f"encoding {key!r} quantizes constant {src!r} twice, differently")

    def _dq(self, codes: str, scale: str, zp: str, out: str, e: TensorEncoding, name: str):
        kwargs = {"axis": e.axis} if e.axis is not None and len(e.scale) > 1 else {}
        return helper.make_node("DequantizeLinear", [codes, scale, zp], [out], name=name, **kwargs)

    def rewrite_marker(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        key = _marker_key(node)
        e = self.enc[key]
        src, out = node.input[0], node.output[0]
        scale, zp = self._qparams(key, e)
        if src in self.constants:
            name = self._codes(src, key, e)
            self.replaced_constants.add(src)
            return [self._dq(name, scale, zp, out, e, f"{key}/DequantizeLinear/{out}")]
        if e.axis is not None and len(e.scale) > 1:
            raise ValueError(f"per-channel encoding {key!r} stands on a computed value {src!r}")
        q_out = f"{out}.quantized"
        return [
            helper.make_node("QuantizeLinear", [src, scale, zp], [q_out],
                             name=f"{key}/QuantizeLinear/{out}"),
            self._dq(q_out, scale, zp, out, e, f"{key}/DequantizeLinear/{out}"),
        ]

    def run(self) -> onnx.ModelProto:
        new_nodes: list[onnx.NodeProto] = []
        for node in self.graph.node:
            if node.domain == MARKER_DOMAIN and node.op_type == MARKER_OP:
                new_nodes.extend(self.rewrite_marker(node))
            else:
                new_nodes.append(node)
        self._drop_unused_constants(new_nodes)
        del self.graph.node[:]
        self.graph.node.extend(new_nodes)
        self.graph.initializer.extend(self.new_inits)
        _drop_marker_opset(self.model)
        if self.narrow_types:
            _raise_default_opset(self.model, OPSET_NARROW_TYPES)
        return self.model

    def _drop_unused_constants(self, nodes: list[onnx.NodeProto]) -> None:
        """Float weights that now live as integer codes are removed (the model shrinks ~4x)."""
        used = {i for n in nodes for i in n.input} | {o.name for o in self.graph.output}
        keep = [i for i in self.graph.initializer
                if i.name in used or i.name not in self.replaced_constants]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        nodes[:] = [n for n in nodes if not (n.op_type == "Constant" and n.output[0]
                                             in self.replaced_constants and n.output[0] not in used)]


def strip_markers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove markers (float export): consumers read the marker's input directly."""
    graph = model.graph
    alias: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.domain == MARKER_DOMAIN and node.op_type == MARKER_OP:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    for out in graph.output:
        if out.name in alias:
            kept.append(helper.make_node("Identity", [alias[out.name]], [out.name]))
    del graph.node[:]
    graph.node.extend(kept)
    _drop_marker_opset(model)
    return model


def _drop_marker_opset(model: onnx.ModelProto) -> None:
    keep = [o for o in model.opset_import if o.domain != MARKER_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _raise_default_opset(model: onnx.ModelProto, version: int) -> None:
    """Opset 21 only widens the types of the ops the exporter writes (Q/DQ, Reshape, Cast...),
    so the same graph is valid at 21."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < version:
            o.version = version


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def write_qdq(marker_model: onnx.ModelProto, encodings: Encodings, *,
              container: WeightContainer = WeightContainer.INT8) -> onnx.ModelProto:
    """Replace every QPoint marker of ``marker_model`` (in place) with Q/DQ from ``encodings``."""
    return _Rewriter(marker_model, encodings, WeightContainer(container)).run()


def read_qdq_params(model: onnx.ModelProto) -> dict[str, dict[str, np.ndarray]]:
    """Scales/zero points of every DequantizeLinear, keyed by the encoding name (test helper and
    the report's proof that the file carries the Encodings' numbers)."""
    inits = {i.name: numpy_helper.to_array(i).astype(np.int64) if i.data_type in
             (TensorProto.INT4, TensorProto.UINT4) else numpy_helper.to_array(i)
             for i in model.graph.initializer}
    found: dict[str, dict[str, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            key = node.input[1].removesuffix(".scale")
            found[key] = {"scale": inits[node.input[1]], "zero_point": inits[node.input[2]]}
    return found
