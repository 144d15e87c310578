"""MACs and compulsory bytes per layer against hand counts (the graph, no runtime)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convdeploy.efficiency.costs import GraphIndex, layer_costs, module_of


def _by_layer(costs):
    return {c.layer: c for c in costs}


def test_tiny_net_float_and_int8_match_hand_counts():
    from tests.artifacts import tiny_artifacts

    flt, qdq = tiny_artifacts()
    f, q = _by_layer(layer_costs(flt.path)), _by_layer(layer_costs(qdq.path))
    # 16x16 input: stem 3->8 k3 (BN folded into a bias), dw 8 groups k3, down 8->16 k3 s2, fc 16->5
    assert f["stem.0"].macs == 8 * 16 * 16 * 3 * 9
    assert f["dw.0"].macs == 8 * 16 * 16 * 1 * 9
    assert f["down.0"].macs == 16 * 8 * 8 * 8 * 9
    assert f["fc"].macs == 16 * 5
    # float: 4 bytes everywhere; weights + bias, input, output
    assert (f["stem.0"].weight_bytes, f["stem.0"].input_bytes, f["stem.0"].output_bytes) == \
        ((8 * 27 + 8) * 4, 3 * 256 * 4, 8 * 256 * 4)
    # int8: weights 1 byte, bias int32, activations uint8 (the quantizer after ReLU)
    assert (q["stem.0"].weight_bytes, q["stem.0"].input_bytes, q["stem.0"].output_bytes) == \
        (8 * 27 + 8 * 4, 3 * 256, 8 * 256)
    assert q["fc"].weight_bytes == 16 * 5 + 5 * 4
    # the ReLU runs inside the conv on every runtime: no layer of its own
    assert not any(c.op == "Relu" for c in q.values())
    # the option-A shortcut stays visible as its own data-movement layers
    assert {"Slice node_slice_1", "Pad node_pad"} <= set(q) and q["Pad node_pad"].macs == 0
    assert sum(c.weighted for c in q.values()) == 4


def test_batch_scales_activations_and_macs_not_weights():
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    one, four = _by_layer(layer_costs(qdq.path)), _by_layer(layer_costs(qdq.path, batch=4))
    for name, c in one.items():
        assert four[name].macs == 4 * c.macs
        assert four[name].input_bytes == 4 * c.input_bytes
        assert four[name].weight_bytes == c.weight_bytes


def _gemm_model(weight_type: int):
    """x (1, 32) -> DQ(int W (10, 32)) Gemm transB=1 -> y: 320 MACs."""
    w = np.arange(320, dtype=np.int8).reshape(10, 32) % 7 - 3
    inits = [helper.make_tensor("head.weight.quantized", weight_type, [10, 32],
                                w.flatten().tolist()),
             numpy_helper.from_array(np.float32(0.1), "head.weight.scale"),
             helper.make_tensor("head.weight.zero_point", weight_type, [], [0])]
    nodes = [helper.make_node("DequantizeLinear", ["head.weight.quantized", "head.weight.scale",
                                                   "head.weight.zero_point"], ["w"]),
             helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["batch", 32])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("weight_type,width", [(TensorProto.INT8, 1.0), (TensorProto.INT4, 0.5)])
def test_weights_count_at_their_stored_width(weight_type, width):
    (c,) = GraphIndex(_gemm_model(weight_type), batch=2).costs()
    assert (c.layer, c.macs, c.weighted) == ("head", 2 * 320, True)
    assert c.weight_bytes == 320 * width
    assert c.input_bytes == 2 * 32 * 4 and c.output_bytes == 2 * 10 * 4


def test_module_names_come_from_weight_initializers():
    assert module_of("layer1.0.conv1.weight.quantized") == "layer1.0.conv1"
    assert module_of("fc.bias") == "fc"
    assert module_of("relu.scale") is None


def test_dynamic_shape_that_inference_cannot_fix_is_named():
    model = _gemm_model(TensorProto.INT8)
    model.graph.node.append(helper.make_node("Reshape", ["y", "shape"], ["z"], name="r"))
    model.graph.input.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [2]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT,
                                                            ["batch", "n"]))
    with pytest.raises(ValueError, match="tensor 'z'"):
        GraphIndex(onnx.ModelProto.FromString(model.SerializeToString())).costs()
