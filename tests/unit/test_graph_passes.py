"""Capture, BatchNorm folding and quantizer placement on the aten graph."""
import pytest
import torch
from torch import nn

from convdeploy.errors import ConvdeployError
from convdeploy.quant import W8A8, capture
from convdeploy.quant.fakequant import ActivationQuantizer, BiasQuantizer, WeightQuantizer
from convdeploy.quant.fold import BN_OPS
from convdeploy.quant.ptq import prepare

aten = torch.ops.aten


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_capture_matches_eager_with_any_batch(tiny_net):
    gm = capture(tiny_net, torch.randn(2, 3, 16, 16))
    x = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(gm(x), tiny_net(x))
    assert aten.adaptive_avg_pool2d.default not in _targets(gm)  # canonicalised to mean


def test_batchnorm_folding_preserves_outputs(tiny_net):
    gm = capture(tiny_net, torch.randn(2, 3, 16, 16))
    qm = prepare(gm, W8A8)
    assert len(qm.folded_batchnorms) == 3
    assert not any(t in BN_OPS for t in _targets(qm.graph))
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(qm.float(x), tiny_net(x), rtol=1e-5, atol=1e-5)


def test_quantizer_placement(tiny_net):
    qm = prepare(capture(tiny_net, torch.randn(2, 3, 16, 16)), W8A8)
    qs = qm.quantizers
    weights = [q for q in qs.values() if isinstance(q, WeightQuantizer)]
    biases = [q for q in qs.values() if isinstance(q, BiasQuantizer)]
    acts = [q for q in qs.values() if isinstance(q, ActivationQuantizer)]
    assert len(weights) == 4 and len(biases) == 4  # 3 convs (BN-folded bias) + linear
    nodes = {n.name: n for n in qm.graph.graph.nodes}
    # ReLU folded into the range: the conv's output feeds the ReLU directly, no quantizer between
    for n in qm.graph.graph.nodes:
        if n.op == "call_function" and n.target in (aten.relu.default, aten.hardtanh.default):
            producer = n.args[0]
            assert producer.op == "call_function", f"quantizer between op and {n.name}"
    # passthrough ops share their input's quantizer: slice/pad/max-pool reuse one encoding
    shared = [q for q in acts if len(q.tensors) > 1]
    assert shared, "strided slice / pad / max-pool should share their input's quantizer"
    assert qm.encodings.output is not None and nodes


def test_exclude_keeps_layer_float_and_unknown_names_fail(tiny_net):
    gm = capture(tiny_net, torch.randn(2, 3, 16, 16))
    qm = prepare(gm, W8A8.with_(exclude=("fc",)))
    assert not any(q.module_path == "fc" and isinstance(q, WeightQuantizer)
                   for q in qm.quantizers.values())
    with pytest.raises(ConvdeployError, match="names no layer"):
        prepare(gm, W8A8.with_(exclude=("nonexistent",)))


def test_nan_weights_are_refused(tiny_net):
    with torch.no_grad():
        tiny_net.stem[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConvdeployError, match="stem.0.weight"):
        capture(tiny_net, torch.randn(2, 3, 16, 16))


def test_wrong_input_shape_is_a_clear_error(tiny_net):
    with pytest.raises(ConvdeployError, match="failed on an input of shape"):
        capture(tiny_net, torch.randn(2, 1, 16, 16))


def test_batch_dependent_model_is_refused():
    class Fixed(nn.Module):
        def forward(self, x):
            return x.view(2, -1)

    with pytest.raises(ConvdeployError, match="torch.export"):
        capture(Fixed(), torch.randn(2, 3, 4, 4))


def test_shared_weights_share_one_quantizer():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.relu(self.conv(x)))

    torch.manual_seed(0)
    model = Tied().eval()
    qm = prepare(capture(model, torch.randn(2, 3, 8, 8)), W8A8)
    weights = [q for q in qm.quantizers.values() if isinstance(q, WeightQuantizer)]
    assert len(weights) == 1 and len(weights[0].tensors) == 2
