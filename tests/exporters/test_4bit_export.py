"""4-bit and 16-bit QDQ files: the same codes, scales and zero points as the Encodings in either
weight container, and both run on cpu-ort within LSBs of the simulation."""
import functools

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from convdeploy.exporters.onnx_export import OnnxExporter
from convdeploy.exporters.qdq import read_qdq_params
from convdeploy.quant import capture, quantize
from convdeploy.quant.encodings import TensorKind
from convdeploy.quant.scheme import W4A4, W4A8, W8A16
from tests.conftest import scratch_dir, seeded_tiny_net


@functools.lru_cache(maxsize=None)
def exported(scheme_name: str, container: str):
    scheme = {"w4a8": W4A8, "w4a4": W4A4, "w8a16": W8A16}[scheme_name]
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 3, 16, 16, generator=gen) for _ in range(4)]
    qm = quantize(capture(seeded_tiny_net(), batches[0][:2]), scheme, batches, progress=False)
    directory = scratch_dir("convdeploy-4bit-")
    art = OnnxExporter(quantized=True, example=batches[0][:2], container=container).export(
        qm, directory)
    return qm, art, batches


def _weight_codes(model: onnx.ModelProto) -> dict[str, tuple[int, np.ndarray]]:
    """DQ input codes of every weight, with their ONNX element type."""
    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            init = inits[node.input[0]]
            out[node.input[1].removesuffix(".scale")] = (init.data_type,
                                                         numpy_helper.to_array(init))
    return out


@pytest.mark.parametrize("container,onnx_type,opset", [("int8", TensorProto.INT8, 20),
                                                       ("int4", TensorProto.INT4, 21)])
def test_4bit_weights_carry_the_encodings_codes(container, onnx_type, opset):
    qm, art, _ = exported("w4a8", container)
    model = onnx.load(str(art.path))
    assert art.details["opset"] == opset and art.details["weight_container"] == container
    codes = _weight_codes(model)
    params = read_qdq_params(model)
    for key, e in qm.encodings.tensors.items():
        np.testing.assert_array_equal(params[key]["scale"].reshape(-1),
                                      np.asarray(e.scale, dtype=np.float32))
        if e.kind is not TensorKind.WEIGHT:
            continue
        dtype, q = codes[key]
        assert dtype == onnx_type
        assert q.min() >= -7 and q.max() <= 7 and q.min() < 0 < q.max()
        weight = qm.graph.get_parameter(qm.quantizers[key].tensors[0])
        np.testing.assert_array_equal(q.astype(np.int64),
                                      e.quantize(weight.detach().numpy()).astype(np.int64))


def test_int4_file_is_smaller():
    _, int8_file, _ = exported("w4a8", "int8")
    _, int4_file, _ = exported("w4a8", "int4")
    assert int4_file.size_bytes < int8_file.size_bytes


@pytest.mark.parametrize("scheme,act_type", [("w4a4", TensorProto.UINT4),
                                             ("w8a16", TensorProto.UINT16)])
def test_narrow_and_wide_activations_use_their_true_types(scheme, act_type):
    qm, art, _ = exported(scheme, "int8")
    model = onnx.load(str(art.path))
    inits = {i.name: i for i in model.graph.initializer}
    types = {inits[n.input[2]].data_type for n in model.graph.node
             if n.op_type == "QuantizeLinear"}
    assert types == {act_type} and art.details["opset"] == 21


@pytest.mark.parametrize("scheme,container,max_lsb", [
    ("w4a8", "int8", 2), ("w4a8", "int4", 3), ("w4a4", "int8", 0), ("w8a16", "int8", 1)])
def test_runs_on_cpu_ort_within_lsbs_of_the_simulation(scheme, container, max_lsb, tmp_path):
    pytest.importorskip("onnxruntime")
    from convdeploy.targets import registry

    qm, art, batches = exported(scheme, container)
    target = registry.get("cpu-ort")
    assert target.check(art) == []
    runnable = target.compile(art, tmp_path)
    x = batches[1]
    got = runnable({"input": x.numpy()})["output"]
    lsb = np.abs(got - qm.simulate(x).numpy()).max() / qm.output_scale()
    assert lsb <= max_lsb + 1e-3
    if scheme == "w4a8" and container == "int8":  # [-7, 7] in int8 runs integer kernels
        assert runnable.details["integer_kernels"].get("QLinearConv", 0) >= 3
