"""The data-movement rewrites (exporters/codes_rewrite.py) are exact: the rewritten graph gives
bit-identical outputs on ONNX Runtime, float and QDQ, and removes the quantizers around the
option-A shortcut's Slice and Pad."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from convdeploy.exporters.codes_rewrite import merge_slices, on_codes, rewrite, slices_as_pools

ort = pytest.importorskip("onnxruntime")


def _run(model, x, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_the_tiny_shortcut_is_rewritten_exactly(quantized):
    from tests.artifacts import tiny_artifacts

    art = tiny_artifacts()[quantized]
    original = onnx.load(str(art.path))
    model = onnx.load(str(art.path))
    counts = rewrite(model)
    ops, before = Counter(n.op_type for n in model.graph.node), \
        Counter(n.op_type for n in original.graph.node)
    # H and W slices: one decimation, run as a 1x1 MaxPool of stride 2
    assert before["Slice"] == 2 and ops["Slice"] == 0
    assert ops["MaxPool"] == before["MaxPool"] + 1
    if quantized:
        assert counts == {"on_codes": 3, "merged_slices": 1, "slices_as_pools": 1}
        # Slice, Slice, Pad each lost their QuantizeLinear, and the DequantizeLinear before
        # them unless another node reads it (the first: the strided conv reads it too)
        assert before["QuantizeLinear"] - ops["QuantizeLinear"] == 3
        assert before["DequantizeLinear"] - ops["DequantizeLinear"] == 2
    else:
        assert counts == {"merged_slices": 1, "slices_as_pools": 1}
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).standard_normal((8, *art.input_shape)).astype(np.float32)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        np.testing.assert_array_equal(_run(model, x, level), _run(original, x, level))


def test_a_chain_with_two_encodings_or_a_nonzero_pad_is_left_alone():
    from tests.artifacts import tiny_artifacts

    model = onnx.load(str(tiny_artifacts()[1].path))
    graph = model.graph
    pad = next(n for n in graph.node if n.op_type == "Pad")
    q = next(n for n in graph.node if pad.output[0] in n.input)
    q.input[1] = graph.node[0].input[1]  # the pad's quantizer now has another scale
    assert on_codes(model) == 2  # the two slices only
    model = onnx.load(str(tiny_artifacts()[1].path))
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(1.0), "one"))
    inputs = [pad.input[0], pad.input[1], "one", *pad.input[3:]]
    del pad.input[:]
    pad.input.extend(inputs)  # pads with 1.0: not the zero point's value
    assert on_codes(model) == 2


def test_slices_on_one_axis_twice_are_not_merged():
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("s", [0]), ("e", [8]), ("a", [1]), ("st", [2]))]
    nodes = [helper.make_node("Slice", ["input", "s", "e", "a", "st"], ["y1"], name="one"),
             helper.make_node("Slice", ["y1", "s", "e", "a", "st"], ["output"], name="two")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, 16])], [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert merge_slices(model) == 0
    assert slices_as_pools(model) == 0  # 2-D, and not from the start to the end


def test_only_whole_spatial_decimations_become_pools():
    from onnx import TensorProto, helper, numpy_helper

    def model(starts, ends, axes, steps, shape):
        inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                 (("s", starts), ("e", ends), ("a", axes), ("st", steps))]
        graph = helper.make_graph(
            [helper.make_node("Slice", ["input", "s", "e", "a", "st"], ["output"])], "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])

    big = 2 ** 63 - 1
    assert slices_as_pools(model([0], [big], [3], [2], [1, 4, 6, 6])) == 1
    assert slices_as_pools(model([0, 0], [6, big], [2, 3], [3, 2], [1, 4, 6, 6])) == 1
    assert slices_as_pools(model([1], [big], [2], [2], [1, 4, 6, 6])) == 0  # starts at 1
    assert slices_as_pools(model([0], [4], [2], [2], [1, 4, 6, 6])) == 0  # stops early
    assert slices_as_pools(model([0], [big], [1], [2], [1, 4, 6, 6])) == 0  # channels
    assert slices_as_pools(model([0], [big], [2], [2], [1, 4, 3, 6, 6])) == 0  # 5-D
    m = model([0], [big], [-1], [2], [2, 4, 6, 7])
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 7)).astype(np.float32)
    want = _run(m, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert slices_as_pools(m) == 1
    np.testing.assert_array_equal(_run(m, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), want)


@pytest.mark.parametrize("scheme", ["w4a4", "w8a16"])
def test_wider_or_narrower_codes_stay_as_written_on_ort(scheme, tmp_path):
    """ORT runs no MaxPool (and we prove no Slice) on uint16 or uint4 codes: those chains are
    left to the quantizers, and the file still loads (found by CI on the 4-bit exports)."""
    from tests.exporters.test_4bit_export import exported

    _, art, _ = exported(scheme, "int8")
    model = onnx.load(str(art.path))
    assert rewrite(model).get("on_codes", 0) == 0
    so = ort.SessionOptions()  # basic: as cpu-ort runs 4-bit activations (ORT's fusion bug)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
