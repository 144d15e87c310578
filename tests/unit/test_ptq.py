"""Post-training quantization: the simulation obeys the numerics contract."""
import numpy as np
import pytest
import torch

from convdeploy.check import sqnr_db
from convdeploy.errors import ConvdeployError
from convdeploy.quant import W8A8, W8A8_PER_TENSOR, capture, quantize
from convdeploy.quant.encodings import TensorKind
from convdeploy.quant.fakequant import Mode, WeightQuantizer


@pytest.fixture
def quantized(tiny_net, tiny_batches):
    return quantize(capture(tiny_net, tiny_batches[0][:2]), W8A8, tiny_batches, progress=False)


def test_simulation_is_close_to_float(quantized, tiny_batches):
    x = tiny_batches[0]
    assert sqnr_db(quantized.float(x).numpy(), quantized.simulate(x).numpy()) > 25.0


def test_encodings_obey_the_contract(quantized):
    enc = quantized.encodings
    for key, e in enc.tensors.items():
        if e.kind is TensorKind.WEIGHT:
            assert e.axis == 0 and set(e.zero_point) == {0} and (e.qmin, e.qmax) == (-127, 127)
        elif e.kind is TensorKind.ACTIVATION:
            assert len(e.scale) == 1 and (e.qmin, e.qmax) == (0, 255)
        else:  # bias: int32 with scale s_in * s_w[c]
            assert e.bits == 32 and set(e.zero_point) == {0}
    q = quantized.quantizers
    bias = q["fc.bias"]
    input_q, weight_q = bias._tied
    np.testing.assert_allclose(enc["fc.bias"].scale,
                               (input_q.scale * weight_q.scale).double().numpy(), rtol=1e-6)


def test_simulated_weights_are_on_the_integer_grid(quantized):
    wq = quantized.quantizers["stem.0.weight"]
    w = quantized.graph.get_submodule("stem.0").weight.detach()
    codes = wq(w) / wq.scale.reshape(-1, 1, 1, 1)  # quantizers are in QUANT mode after PTQ
    torch.testing.assert_close(codes, torch.round(codes), atol=1e-4, rtol=0)
    assert codes.abs().max() <= 127


def test_per_channel_beats_per_tensor_when_channel_ranges_differ():
    """The whitepaper's point: with one scale per tensor, channels whose weights are 100x
    smaller than the largest lose almost all their precision; per-channel scales keep it."""
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    w[:4] *= 100.0
    small = w[4:].numpy()
    errs = {}
    for scheme in (W8A8, W8A8_PER_TENSOR):
        wq = WeightQuantizer("w", scheme.weights)
        wq.init_from(w)
        wq.mode = Mode.QUANT
        errs[scheme.name] = sqnr_db(small, wq(w)[4:].numpy())
    assert errs["w8a8"] > 35.0  # ~8 bits on the small channels
    assert errs["w8a8"] > errs["w8a8-per-tensor"] + 30.0  # per-tensor loses ~5+ bits there


def test_empty_or_nonfinite_calibration_is_refused(tiny_net, tiny_batches):
    gm = capture(tiny_net, tiny_batches[0][:2])
    with pytest.raises(ConvdeployError, match="empty"):
        quantize(gm, W8A8, [], progress=False)
    bad = tiny_batches[0].clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ConvdeployError, match="NaN/inf"):
        quantize(gm, W8A8, [bad], progress=False)


def _multipliers(qm) -> list[float]:
    """Every conv/linear channel's requantization multiplier s_in * s_w[c] / s_out."""
    return [float(m) for wq in qm.quantizers.values() if isinstance(wq, WeightQuantizer)
            for i, o in wq.requant for m in (i.scale * wq.scale / o.scale).tolist()]


def test_requantization_multipliers_are_floored_at_no_cost(monkeypatch):
    """Tiny channels (a folded layer scale) get M >= MIN_REQUANT_MULTIPLIER; the floor moves
    the simulated output by at most one output LSB on a handful of values."""
    from convdeploy.quant import fakequant
    from convdeploy.quant.fixed_point import MIN_REQUANT_MULTIPLIER
    from tests.conftest import layer_scaled_net

    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(8, 128, 4, 4, generator=gen).abs() for _ in range(3)]
    gm = capture(layer_scaled_net(), batches[0][:2])
    floored = quantize(gm, W8A8, batches, progress=False)
    assert floored.ptq_details["requant-floor"]["channels"] >= 4
    assert min(_multipliers(floored)) >= MIN_REQUANT_MULTIPLIER * (1 - 1e-6)
    monkeypatch.setattr(fakequant, "MIN_REQUANT_MULTIPLIER", 0.0)
    plain = quantize(gm, W8A8, batches, progress=False)
    assert "requant-floor" not in plain.ptq_details
    assert min(_multipliers(plain)) < MIN_REQUANT_MULTIPLIER / 1000  # the case is real
    lsb = floored.encodings[floored.encodings.output].scale[0]
    diff = (floored.simulate(batches[2]) - plain.simulate(batches[2])).abs() / lsb
    assert float(diff.max()) <= 1.0 + 1e-4 and float((diff > 0.5).float().mean()) < 0.01
