"""The zoo's modern ConvNets (random weights) through every integer consumer: the integer
reference equals LiteRT's reference kernels on every output, and no op is refused."""
import numpy as np
import pytest
import torch

from convdeploy.exporters.lowering import OpKind
from convdeploy.models import modern_cifar
from tests.integer_ops import roundtrip

# the ops each family must exercise (islands: the LayerNorms on integer targets)
EXPECTED = {"convnext": {OpKind.FLOAT_ISLAND, OpKind.GELU, OpKind.FULLY_CONNECTED},
            "inceptionnext": {OpKind.CONCATENATION, OpKind.STRIDED_SLICE, OpKind.GELU},
            "hornet": {OpKind.MUL, OpKind.FLOAT_ISLAND, OpKind.STRIDED_SLICE},
            "lsnet": {OpKind.MUL, OpKind.PAD, OpKind.CONCATENATION},
            "mobilenetv3": {OpKind.HARD_SWISH, OpKind.MUL}}


@pytest.mark.parametrize("name", sorted(modern_cifar.MODELS))
def test_zoo_model_runs_bit_exact_on_integer_targets(name):
    torch.manual_seed(0)
    model = modern_cifar.MODELS[name][0]()
    rt = roundtrip(model, (3, 16, 16), samples=8, float_model=False)  # 16x16: same graph
    assert EXPECTED[name] <= {op.kind for op in rt.graph.ops}
    np.testing.assert_array_equal(rt.litert_ref, rt.int_reference)
    assert rt.lsb(rt.ort) <= 12  # random weights; trained models are measured in bench/


def test_squeezetime_runs_bit_exact_on_integer_targets():
    """The video zoo's SqueezeTime (random weights, time folded into channels): its sigmoid
    gates, broadcast products, position embedding and post-Add BatchNorm on every integer
    consumer, the integer reference equal to LiteRT's reference kernels."""
    from convdeploy.models.video_nets import SqueezeTime

    torch.manual_seed(0)
    model = SqueezeTime(5, frames=4, size=(16, 16), widths=(8, 16, 16))
    rt = roundtrip(model, (3, 4, 16, 16), samples=8, float_model=False)
    assert {OpKind.LOGISTIC, OpKind.MUL, OpKind.MEAN} <= {op.kind for op in rt.graph.ops}
    np.testing.assert_array_equal(rt.litert_ref, rt.int_reference)
    assert rt.lsb(rt.ort) <= 12
