"""Lowering the QDQ model to the integer op list shared by int-reference and the TFLite writer."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from convdeploy.exporters.lowering import Activation, LoweringError, OpKind, infer_shapes, lower
from tests.artifacts import tiny_artifacts


def test_tiny_model_lowers_to_fused_integer_kernels():
    _, qdq = tiny_artifacts()
    graph = lower(onnx.load(str(qdq.path)))
    kinds = [(op.kind, op.activation) for op in graph.ops]
    assert kinds[0][0] is OpKind.QUANTIZE and kinds[-1][0] is OpKind.DEQUANTIZE
    assert (OpKind.DEPTHWISE_CONV, Activation.RELU6) in kinds
    assert (OpKind.CONV, Activation.RELU) in kinds
    assert (OpKind.ADD, Activation.RELU) in kinds
    assert {OpKind.MEAN, OpKind.MAX_POOL, OpKind.STRIDED_SLICE, OpKind.PAD,
            OpKind.FULLY_CONNECTED} <= {k for k, _ in kinds}
    for op in graph.ops:  # weights are integer codes on the encodings' grid
        if op.weight is not None:
            assert op.weight.dtype == np.int64 and np.abs(op.weight).max() <= 127
            assert op.weight_scale.shape == (op.weight.shape[0],)
    shapes = infer_shapes(graph, batch=3)
    assert shapes[graph.output] == (3, 5)


def test_float_model_lowers_with_float_weights():
    flt, _ = tiny_artifacts()
    graph = lower(onnx.load(str(flt.path)))
    assert not graph.quantized
    assert all(op.weight_scale is None for op in graph.ops)
    assert graph.ops[-1].output == graph.output


def test_an_activation_without_integer_form_is_refused_by_name():
    _, qdq = tiny_artifacts()
    model = onnx.load(str(qdq.path))
    for node in model.graph.node:
        if node.op_type == "Clip":  # ReLU6 -> Clip(-1, 1)
            for name, value in zip(node.input[1:3], (-1.0, 1.0)):
                for init in model.graph.initializer:
                    if init.name == name:
                        init.CopyFrom(numpy_helper.from_array(np.array(value, np.float32), name))
                for n in model.graph.node:
                    if n.op_type == "Constant" and n.output[0] == name:
                        n.CopyFrom(helper.make_node("Constant", [], [name], value=numpy_helper
                                                    .from_array(np.array(value, np.float32))))
    with pytest.raises(LoweringError, match=r"Clip\(-1.0, 1.0\)"):
        lower(model)


def test_stride_two_conv_gets_an_explicit_pad_in_tflite():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from ai_edge_litert.interpreter import Interpreter

    from tests.artifacts import tiny_tflite_artifacts

    _, tfl = tiny_tflite_artifacts()
    ops = [o["op_name"] for o in Interpreter(model_path=str(tfl.path))._get_ops_details()]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    # PyTorch pads stride-2 convs on both sides; TFLite SAME would pad bottom/right only
    assert ops.count("PAD") == 2  # the option-A shortcut's channel pad + the stride-2 conv's
    assert "DEPTHWISE_CONV_2D" in ops and "FULLY_CONNECTED" in ops


def test_unnamed_nodes_lower_like_named_ones():
    """ONNX node names are optional: a model whose nodes have none (or repeat one) lowers to the
    same ops as the named original (a fused ReLU must not hide every other unnamed node)."""
    _, qdq = tiny_artifacts()
    model = onnx.load(str(qdq.path))
    named = lower(model)
    for blank in ("", "same"):
        copy = onnx.ModelProto.FromString(model.SerializeToString())
        for node in copy.graph.node:
            node.name = blank
        graph = lower(copy)
        assert [(op.kind, op.activation, op.output) for op in graph.ops] == \
            [(op.kind, op.activation, op.output) for op in named.ops]
        assert len({op.name for op in graph.ops}) == len(graph.ops)
    assert all(node.name for node in model.graph.node)  # the caller's model is not touched
