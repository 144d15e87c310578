"""Marker ONNX -> QDQ ONNX, with the numbers of the Encodings and nothing else.

The torch exporter writes a ``convdeploy.QPoint(key=...)`` node wherever a quantizer stands.
This pass replaces each one:
- on a constant (weight, bias): the constant becomes integer codes (int8 / int32) and one
  DequantizeLinear (per-channel along the encoding's axis) feeds its consumers;
- on a computed value: QuantizeLinear -> DequantizeLinear.
Keeping this at the ONNX level (rather than relying on torch's fake-quant export) is what lets
every exporter write exactly the Encodings, for any bit width.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convdeploy.quant.encodings import Encodings, TensorEncoding

MARKER_DOMAIN = "convdeploy"
MARKER_OP = "QPoint"
_ONNX_INT_TYPES = {
    np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int16): TensorProto.INT16, np.dtype(np.uint16): TensorProto.UINT16,
    np.dtype(np.int32): TensorProto.INT32,
}


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
    def __init__(self, model: onnx.ModelProto, encodings: Encodings) -> None:
        self.model, self.graph, self.enc = model, model.graph, encodings
        self.constants = _constants(self.graph)
        self.params_written: set[str] = set()
        self.new_inits: list[onnx.TensorProto] = []
        self.replaced_constants: set[str] = set()

    def _qparams(self, key: str, e: TensorEncoding) -> tuple[str, str]:
        """Scale and zero-point initializers of one encoding, written once and shared."""
        scale, zp = f"{key}.scale", f"{key}.zero_point"
        if key not in self.params_written:
            per_axis = e.axis is not None and len(e.scale) > 1
            s = np.asarray(e.scale, dtype=np.float32)
            z = np.asarray(e.zero_point).astype(e.numpy_dtype())
            self.new_inits.append(numpy_helper.from_array(s if per_axis else s.reshape(()), scale))
            self.new_inits.append(numpy_helper.from_array(z if per_axis else z.reshape(()), zp))
            self.params_written.add(key)
        return scale, zp

    def _dq(self, codes: str, scale: str, zp: str, out: str, e: TensorEncoding, name: str):
        kwargs = {"axis": e.axis} if e.axis is not None and len(e.scale) > 1 else {}
        return helper.make_node("DequantizeLinear", [codes, scale, zp], [out], name=name, **kwargs)

    def rewrite_marker(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        key = _marker_key(node)
        e = self.enc[key]
        src, out = node.input[0], node.output[0]
        scale, zp = self._qparams(key, e)
        if src in self.constants:
            codes = e.quantize(self.constants[src])
            name = f"{src}.quantized"
            self.new_inits.append(numpy_helper.from_array(codes, name))
            self.replaced_constants.add(src)
            return [self._dq(name, scale, zp, out, e, f"{key}/DequantizeLinear")]
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


def write_qdq(marker_model: onnx.ModelProto, encodings: Encodings) -> onnx.ModelProto:
    """Replace every QPoint marker of ``marker_model`` (in place) with Q/DQ from ``encodings``."""
    return _Rewriter(marker_model, encodings).run()


def read_qdq_params(model: onnx.ModelProto) -> dict[str, dict[str, np.ndarray]]:
    """Scales/zero points of every DequantizeLinear, keyed by the encoding name (test helper and
    the report's proof that the file carries the Encodings' numbers)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    found: dict[str, dict[str, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            key = node.input[1].removesuffix(".scale")
            found[key] = {"scale": inits[node.input[1]], "zero_point": inits[node.input[2]]}
    return found
