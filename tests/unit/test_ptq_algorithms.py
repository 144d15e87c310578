"""Each PTQ algorithm on tiny seeded models, asserting a measurable improvement over
round-to-nearest (not just that it runs)."""
import pytest
import torch
from torch import nn

from convdeploy.check import sqnr_db
from convdeploy.quant import capture
from convdeploy.quant.adaround import adaround
from convdeploy.quant.bias_correction import channel_means, correct_biases
from convdeploy.quant.cle import equalize
from convdeploy.quant.config import PTQConfig
from convdeploy.quant.fakequant import Mode
from convdeploy.quant.layers import weighted_layers
from convdeploy.quant.ptq import apply_ptq, calibrate, prepare, quantize
from convdeploy.quant.scheme import W4A8, W8A8_PER_TENSOR
from convdeploy.quant.weight_clipping import mse_weight_scales


class ChainNet(nn.Module):
    """conv-ReLU-conv-ReLU6-depthwise-conv with deliberately unbalanced channel ranges: the case
    CLE exists for."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.clamp(self.c2(x), 0, 6)
        x = torch.relu(self.dw(x))
        return self.c3(x).mean((2, 3))


def chain_net() -> ChainNet:
    torch.manual_seed(0)
    net = ChainNet()
    with torch.no_grad():  # channel i of c1 scaled by up to 30x, compensated in c2
        gains = torch.logspace(-1, 1.5, 8)
        net.c1.weight *= gains[:, None, None, None]
        net.c1.bias *= gains
        net.c2.weight /= gains[None, :, None, None]
    return net.eval()


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(32, 3, 12, 12, generator=gen) for _ in range(4)]


def _error(qm, x, reference) -> float:
    return float(((qm.simulate(x) - reference) ** 2).mean())


def test_cle_preserves_relu_function_and_balances_ranges(data):
    net = chain_net()
    gm = capture(net, data[0][:2])
    qm = prepare(gm, W8A8_PER_TENSOR)
    before = {l.path: l.weight(qm.graph).abs().reshape(l.weight(qm.graph).shape[0], -1).amax(1)
              for l in weighted_layers(qm.graph)}
    result = equalize(qm)
    assert result.pairs == 3 and result.relu6_replaced == 1  # c1-c2, c2-dw, dw-c3
    w = weighted_layers(qm.graph)[0].weight(qm.graph)
    after = w.abs().reshape(w.shape[0], -1).amax(1)
    spread = lambda r: float(r.detach().max() / r.detach().min())  # noqa: E731
    assert spread(after) < spread(before["c1"]) / 5
    # Float function unchanged wherever the ReLU6 did not clip (inputs scaled down).
    x = data[0] * 0.05
    with torch.no_grad():
        assert torch.allclose(qm.float(x), net(x), atol=1e-5)


def test_cle_improves_per_tensor_quantization(data):
    net = chain_net()
    gm = capture(net, data[0][:2])
    x = data[1] * 0.3
    with torch.no_grad():
        ref = net(x)
    plain = quantize(gm, W8A8_PER_TENSOR, data, progress=False)
    cle = quantize(gm, W8A8_PER_TENSOR, data, PTQConfig(methods=("cle",)), progress=False)
    assert _error(cle, x, ref) < 0.5 * _error(plain, x, ref)


def _weight_error(w: torch.Tensor, scale: torch.Tensor) -> float:
    s = scale.reshape(-1, *[1] * (w.dim() - 1))
    return float(((torch.clamp(torch.round(w / s), -7, 7) * s - w) ** 2).sum().detach())


def test_weight_mse_clipping_beats_minmax_at_4_bits(tiny_net, tiny_batches):
    qm = prepare(capture(tiny_net, tiny_batches[0][:2]), W4A8)
    gains = []
    for layer in weighted_layers(qm.graph):
        w, wq = layer.weight(qm.graph), layer.weight_q
        minmax = wq.scale.clone()
        best = mse_weight_scales(w, wq)
        assert bool((best <= minmax + 1e-9).all())  # it only ever clips
        assert _weight_error(w, best) <= _weight_error(w, minmax) + 1e-9
        gains.append(_weight_error(w, minmax) / _weight_error(w, best))
    assert max(gains) > 1.1  # a measurable gain on at least one layer


def test_adaround_beats_round_to_nearest_per_layer_and_end_to_end(tiny_net, tiny_batches):
    import copy

    gm = capture(tiny_net, tiny_batches[0][:2])
    qm = prepare(gm, W4A8)
    calibrate(qm, tiny_batches, progress=False)
    reference = copy.deepcopy(qm)
    x = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = tiny_net(x)
    rtn_error = _error(qm, x, ref)
    result = adaround(qm, tiny_batches, reference, iters=400, batch=16, progress=False)
    assert len(result.layers) == 4
    for layer in result.layers:  # each layer's output MSE on the calibration data
        assert layer.mse_adaround < layer.mse_nearest, layer
        assert 0 < layer.flipped < 0.5
    assert _error(qm, x, ref) < 0.95 * rtn_error  # held-out data, whole model
    # The learned rounding lies on the grid: the weight quantizer reproduces it exactly.
    for layer in weighted_layers(qm.graph):
        w = layer.weight(qm.graph)
        with qm.using(Mode.QUANT):
            assert torch.equal(layer.weight_q(w), w)


def test_bias_correction_removes_the_mean_output_shift(tiny_net, tiny_batches):
    import copy

    gm = capture(tiny_net, tiny_batches[0][:2])
    qm = prepare(gm, W4A8)
    calibrate(qm, tiny_batches, progress=False)
    reference = copy.deepcopy(qm)
    layers = weighted_layers(qm.graph)
    last = layers[-1].node

    def shift() -> float:
        q = channel_means(qm, [last], tiny_batches, Mode.QUANT)[last]
        f = channel_means(reference, [weighted_layers(reference.graph)[-1].node], tiny_batches,
                          Mode.OFF)
        return float((q - next(iter(f.values()))).abs().mean())

    before = shift()
    correct_biases(qm, tiny_batches, reference, progress=False)
    assert shift() < 0.2 * before


def test_combined_methods_record_label_and_timings(tiny_net, tiny_batches):
    qm = prepare(capture(tiny_net, tiny_batches[0][:2]), W4A8)
    apply_ptq(qm, tiny_batches, PTQConfig(methods=("bias-correction", "cle", "adaround"),
                                          adaround_iters=20), progress=False)
    assert qm.label == "w4a8+cle+adaround+bias-correction"  # applied in the fixed order
    assert {"cle", "calibrate", "adaround", "bias-correction"} <= set(qm.timings_s)
    x = tiny_batches[0]
    assert sqnr_db(qm.float(x).numpy(), qm.simulate(x).numpy()) > 10
