"""Per-layer profiles on the runtimes that have them: every weighted layer of the tiny model is
mapped to a kernel, in the precision the runtime ran; LiteRT's one-op cuts compute exactly what
the op computes inside the whole model. Structure only: timings are never asserted here."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from convdeploy.efficiency.peak import Peak
from convdeploy.efficiency.profile import profile_artifact
from convdeploy.targets import registry
from tests.artifacts import tiny_artifacts, tiny_tflite_artifacts

GIVEN = {"float": Peak(100.0, ((math.inf, 20.0),), "given"),
         "int8": Peak(200.0, ((math.inf, 20.0),), "given")}
WEIGHTED = {"stem.0", "dw.0", "down.0", "fc"}


def _target(name):
    target = registry.get(name)
    if target.unavailable():
        pytest.skip(target.unavailable())
    return target


@pytest.mark.parametrize("name", ["cpu-ort", "cpu-openvino", "mobile-litert"])
@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_every_weighted_layer_is_mapped(name, quantized, tmp_path: Path):
    target = _target(name)
    onnx_art = tiny_artifacts()[quantized]
    art = tiny_tflite_artifacts()[quantized] if name == "mobile-litert" else onnx_art
    p = profile_artifact(art, onnx_art.path, target, tmp_path, threads=1, batch=2, runs=5,
                         warmup=2, min_time_s=0.05, peaks=GIVEN, model="tiny")
    rows = {r.layer: r for r in p.layers}
    assert WEIGHTED <= {r.layer for r in p.layers if r.kernels}, rows.keys()
    assert not [w for w in p.warnings if "no " in w and "kernel was mapped" in w]
    convs = [rows[x] for x in ("stem.0", "dw.0", "down.0")]
    assert {r.dtype for r in convs} == {"int8" if quantized else "float"}
    assert all(r.macs > 0 and r.bound_ms > 0 and r.efficiency is not None for r in convs)
    assert p.batch == 2 and rows["stem.0"].macs == 2 * 8 * 16 * 16 * 27
    assert p.attributed_ms + p.unattributed_ms == pytest.approx(p.latency_ms)


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_litert_one_op_cuts_equal_the_op_inside_the_model():
    target = _target("mobile-litert")
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    from convdeploy.targets.litert_isolated import one_op_model

    path = tiny_tflite_artifacts()[1].path
    data = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    whole = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    (inp,) = whole.get_input_details()
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32)
    whole.set_tensor(inp["index"], x)
    whole.invoke()
    sub = model.subgraphs[0]
    for i, op in enumerate(sub.operators):
        one = Interpreter(model_content=one_op_model(model, i, schema))
        one.allocate_tensors()
        feeds = [t for t in op.inputs if t >= 0 and not (
            sub.tensors[t].buffer and model.buffers[sub.tensors[t].buffer].data is not None
            and len(model.buffers[sub.tensors[t].buffer].data))]
        for d, t in zip(one.get_input_details(), feeds):
            one.set_tensor(d["index"], whole.get_tensor(t))
        one.invoke()
        got = one.get_tensor(one.get_output_details()[0]["index"])
        np.testing.assert_array_equal(got, whole.get_tensor(op.outputs[0]), err_msg=f"op {i}")
    assert target.name == "mobile-litert"
