"""ONNX exporter: float and QDQ models from one ``QuantizedModel`` graph.

Both go through ``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension. The QDQ model is
exported with quantizers in MARKER mode and rewritten by ``exporters.qdq`` from the Encodings.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import torch

from convdeploy.errors import ConvdeployError
from convdeploy.files import write_bytes_atomic
from convdeploy.quant.fakequant import Mode
from convdeploy.quant.graph import batch_dim
from convdeploy.quant.ptq import QuantizedModel

from .artifact import Artifact, ArtifactFormat
from .qdq import MARKER_DOMAIN, MARKER_OP, WeightContainer, opset_of, strip_markers, write_qdq

OPSET = 20
INPUT_NAME, OUTPUT_NAME = "input", "output"


def _register_marker_schema() -> None:
    """onnxscript needs an ONNX schema to emit the custom-domain marker node."""
    if onnx.defs.has(MARKER_OP, MARKER_DOMAIN):
        return
    param = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        MARKER_OP, MARKER_DOMAIN, 1,
        inputs=[param("x", "T")], outputs=[param("y", "T")],
        type_constraints=[("T", ["tensor(float)"], "float tensors")],
        attributes=[onnx.defs.OpSchema.Attribute(
            "key", onnx.defs.OpSchema.AttrType.STRING, "encoding key")],
    )
    onnx.defs.register_schema(schema)


def _marker_translation():
    import onnxscript

    _register_marker_schema()
    opset = onnxscript.values.Opset(MARKER_DOMAIN, 1)

    def qpoint(x, key: str):
        return opset.QPoint(x, key=key)

    return {torch.ops.convdeploy.qpoint.default: qpoint}


def _torch_export_onnx(qm: QuantizedModel, example: torch.Tensor) -> onnx.ModelProto:
    """One export with markers; float and QDQ files are both rewrites of it."""
    sink = io.StringIO()
    # The exporter prints progress and warnings on every call; keep the user's terminal clean.
    with qm.using(Mode.MARKER), warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                qm.graph, (example,), dynamo=True, opset_version=OPSET, optimize=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch_dim()},), custom_translation_table=_marker_translation(),
                verbose=False)
        except Exception as exc:
            raise ConvdeployError(
                f"ONNX export failed: {str(exc).strip().splitlines()[0][:300]}",
                fix="run with --debug for the exporter's report; an op without an ONNX "
                    "translation must be replaced in the model") from exc
    return program.model_proto


def _strip_exporter_metadata(model: onnx.ModelProto) -> None:
    """Drop the torch exporter's per-node metadata (stack traces, FX names) and value_info of
    values that no longer exist: ~30% of a small model's file, and nothing a runtime reads."""
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
    live = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer}
    keep = [v for v in graph.value_info if v.name in live]
    for v in keep:
        del v.metadata_props[:]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    for v in list(graph.input) + list(graph.output):
        del v.metadata_props[:]


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model, full_check=True)
    write_bytes_atomic(path, model.SerializeToString())


def export_onnx(qm: QuantizedModel, path: str | Path, *, example: torch.Tensor,
                quantized: bool, encodings_path: Path | None = None,
                container: WeightContainer = WeightContainer.INT8,
                precision: str | None = None) -> Artifact:
    """Write ``qm`` as float ONNX (``quantized=False``) or QDQ ONNX carrying ``qm.encodings``;
    ``container`` says how 4-bit weights are stored (see ``exporters.qdq``)."""
    path = Path(path)
    model = _torch_export_onnx(qm, example)
    model = (write_qdq(model, qm.encodings, container=container) if quantized
             else strip_markers(model))
    _strip_exporter_metadata(model)
    model.producer_name = "convdeploy"
    _save(model, path)
    details = {"opset": opset_of(model), "nodes": len(model.graph.node),
               "op_types": sorted({n.op_type for n in model.graph.node})}
    if quantized and qm.scheme.min_bits == 4:
        details["weight_container"] = WeightContainer(container).value
    return Artifact(
        name=path.stem, format=ArtifactFormat.ONNX,
        precision=(precision or qm.scheme.name) if quantized else "float", path=path,
        encodings=encodings_path if quantized else None, input_name=INPUT_NAME,
        output_name=OUTPUT_NAME, input_shape=tuple(example.shape[1:]),
        output_scale=qm.output_scale() if quantized else None, details=details,
        scheme=qm.scheme if quantized else None)


class OnnxExporter:
    """``Exporter`` protocol wrapper: float or QDQ ONNX. ``precision`` labels the artifact
    (scheme and PTQ methods); ``container`` stores 4-bit weights as int8 or INT4."""

    format = ArtifactFormat.ONNX

    def __init__(self, *, quantized: bool, example: torch.Tensor, precision: str | None = None,
                 container: WeightContainer = WeightContainer.INT8) -> None:
        self.quantized, self.example = quantized, example
        self.precision, self.container = precision, WeightContainer(container)

    def export(self, model: QuantizedModel, directory: Path) -> Artifact:
        if not self.quantized:
            return export_onnx(model, Path(directory) / "model.float.onnx", example=self.example,
                               quantized=False)
        stem = f"model.{model.scheme.name}"
        enc = model.encodings.save(Path(directory) / f"{stem}.encodings.json")
        if self.container is WeightContainer.INT4 and model.scheme.min_bits == 4:
            stem += ".int4"
        return export_onnx(model, Path(directory) / f"{stem}.onnx", example=self.example,
                           quantized=True, encodings_path=enc, container=self.container,
                           precision=self.precision)
