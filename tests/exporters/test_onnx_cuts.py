"""Prefixes of an ONNX graph (exporters/onnx_cuts.py): cuts only where one tensor carries all
that follows, never between a kernel and what the runtime fuses into it, after the quantizer in
a QDQ graph; a prefix computes exactly the model's own tensor."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convdeploy.exporters.onnx_cuts import cut_points, prefix


def _model(nodes, inits, out_shape):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _residual():
    """conv-relu -> (conv, shortcut) add -> relu -> conv -> pool -> flatten -> gemm."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}")
         for i in range(3)]
    fc = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "fc")
    pads = {"pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c1"], "c1", **pads),
             helper.make_node("Relu", ["c1"], ["t1"], "r1"),
             helper.make_node("Conv", ["t1", "w1"], ["t2"], "c2", **pads),
             helper.make_node("Add", ["t1", "t2"], ["t3"], "add"),
             helper.make_node("Relu", ["t3"], ["t4"], "r2"),
             helper.make_node("Conv", ["t4", "w2"], ["t5"], "c3", **pads),
             helper.make_node("GlobalAveragePool", ["t5"], ["p"], "pool"),
             helper.make_node("Flatten", ["p"], ["flat"], "flatten"),
             helper.make_node("Gemm", ["flat", "fc"], ["y"], "gemm", transB=1)]
    return _model(nodes, [*w, fc], [1, 3])


def test_cuts_only_where_one_tensor_feeds_a_kernel_or_a_branch():
    # not after c1 (its ReLU fuses), not inside the block (two tensors alive), not after the
    # add (its ReLU fuses), not before the pool or the flatten
    assert cut_points(_residual(), 8) == [(1, "t1"), (4, "t4"), (7, "flat")]
    assert cut_points(_residual(), 2) == [(1, "t1"), (7, "flat")]  # spread over the order


def test_a_qdq_graph_is_cut_after_the_quantizer_and_weight_dequantizers_do_not_block():
    inits = [numpy_helper.from_array(np.array(v, t), n) for v, t, n in (
        (0.1, np.float32, "s"), (0, np.uint8, "z"), (0.01, np.float32, "ws"),
        (0, np.int8, "wz"))]
    inits += [numpy_helper.from_array(np.ones((4, 4, 1, 1), np.int8), f"w{i}") for i in (1, 2)]
    nodes = [helper.make_node("DequantizeLinear", [f"w{i}", "ws", "wz"], [f"dw{i}"], f"wdq{i}")
             for i in (1, 2)]  # the exporters put the weights' dequantizers first
    nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q0"], "q0"),
              helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"], "d0"),
              helper.make_node("Conv", ["d0", "dw1"], ["c1"], "c1"),
              helper.make_node("QuantizeLinear", ["c1", "s", "z"], ["q1"], "q1"),
              helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["d1"], "d1"),
              helper.make_node("Conv", ["d1", "dw2"], ["y"], "c2")]
    model = _model(nodes, inits, [1, 4, 6, 6])
    assert cut_points(model, 8) == [(2, "q0"), (5, "q1")]
    cut = prefix(model, 5, "q1", "p")  # ends in the codes' maximum
    assert [o.type.tensor_type.elem_type for o in cut.graph.output] == [TensorProto.UINT8]
    assert cut.graph.node[-1].op_type == "ReduceMax"
    assert {t.name for t in cut.graph.initializer} == {"s", "z", "ws", "wz", "w1", "w2"}


def test_a_prefix_computes_the_models_own_tensor():
    ort = pytest.importorskip("onnxruntime")
    model = _residual()
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    watched = helper.make_model(model.graph, opset_imports=list(model.opset_import))
    watched.graph.output.extend([helper.make_tensor_value_info("t4", TensorProto.FLOAT, None)])
    whole = ort.InferenceSession(watched.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = whole.run(["t4"], {"x": x})[0]
    cut = prefix(model, 4, "t4", "p")
    assert len(cut.graph.node) == 6 and {t.name for t in cut.graph.initializer} == {"w0", "w1"}
    cut.graph.output.extend([helper.make_tensor_value_info("t4", TensorProto.FLOAT, None)])
    got_max, got = ort.InferenceSession(cut.SerializeToString(),
                                        providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(got, expected)
    assert got_max == expected.max()
