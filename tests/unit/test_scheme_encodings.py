import json

import numpy as np
import pytest
import torch

from convdeploy.quant.encodings import Encodings, TensorEncoding, TensorKind
from convdeploy.quant.fakequant import fake_quantize
from convdeploy.quant.observers import affine_params
from convdeploy.quant.scheme import (INT8_WEIGHT_PER_CHANNEL, UINT8_ACT, W8A8, W8A8_PER_TENSOR,
                                     QuantScheme, TensorQuant)


def test_ranges_follow_the_whitepaper():
    assert (INT8_WEIGHT_PER_CHANNEL.qmin, INT8_WEIGHT_PER_CHANNEL.qmax) == (-127, 127)
    assert (UINT8_ACT.qmin, UINT8_ACT.qmax) == (0, 255)
    four = TensorQuant(bits=4)
    assert (four.qmin, four.qmax) == (-7, 7)
    with pytest.raises(ValueError):
        TensorQuant(bits=8, symmetric=True, signed=False)


def test_scheme_names_and_validation():
    assert W8A8.name == "w8a8"
    assert W8A8_PER_TENSOR.name == "w8a8-per-tensor"
    assert W8A8.with_(calibration="mse").name == "w8a8-mse"
    with pytest.raises(ValueError):
        QuantScheme(percentile=10.0)


@pytest.mark.parametrize("lo,hi", [(-1.3, 2.7), (0.0, 6.0), (-5.0, -0.1), (0.2, 3.0)])
def test_zero_is_exactly_representable(lo, hi):
    scale, zp = affine_params(lo, hi, UINT8_ACT)
    assert 0 <= zp <= 255
    # 0.0 quantizes to the zero point and back to exactly 0.0
    q = np.clip(np.round(0.0 / scale) + zp, 0, 255)
    assert (q - zp) * scale == 0.0


def test_numpy_contract_equals_torch_fake_quant():
    """The Encodings' numpy arithmetic and the torch simulation give identical values."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 5, 5)).astype(np.float32) * 3
    scale, zp = affine_params(float(x.min()), float(x.max()), UINT8_ACT)
    enc = TensorEncoding.from_arrays(TensorKind.ACTIVATION, UINT8_ACT, scale, zp)
    ref = enc.dequantize(enc.quantize(x))
    sim = fake_quantize(torch.from_numpy(x), torch.tensor(np.float32(scale)),
                        torch.tensor(float(zp)), 0, 255).numpy()
    np.testing.assert_array_equal(ref, sim)


def test_per_channel_quantize_uses_axis():
    w = np.array([[1.0, -2.0], [0.1, 0.05]], dtype=np.float32)
    enc = TensorEncoding.from_arrays(TensorKind.WEIGHT, INT8_WEIGHT_PER_CHANNEL,
                                     [2.0 / 127, 0.1 / 127], [0, 0], axis=0)
    q = enc.quantize(w)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [[64, -127], [127, 64]])


def test_encodings_json_roundtrip(tmp_path):
    enc = Encodings(tensors={"a": TensorEncoding.from_arrays(
        TensorKind.ACTIVATION, UINT8_ACT, 0.02, 12, module="m", tensors=("relu",))},
        scheme=W8A8.to_dict(), output="a")
    path = enc.save(tmp_path / "e.json")
    back = Encodings.load(path)
    assert back.tensors == enc.tensors and back.output == "a"
    assert json.loads(path.read_text())["tensors"]["a"]["dtype"] == "uint8"


def test_invalid_scale_is_refused():
    with pytest.raises(ValueError):
        TensorEncoding(kind="activation", bits=8, signed=False, qmin=0, qmax=255,
                       scale=(0.0,), zero_point=(0,))


def test_default_ptq_is_measured_per_scheme_and_none_before_qat():
    from convdeploy.config import DeployConfig, effective_ptq
    from convdeploy.quant.config import PTQConfig, PTQMethod, QATConfig
    from convdeploy.quant.scheme import W4A8

    assert effective_ptq(DeployConfig(scheme=W4A8)).methods == (PTQMethod.ADAROUND,)
    # QAT keeps the float latent weights: AdaRound's grid weights would discard them
    assert effective_ptq(DeployConfig(scheme=W4A8, qat=QATConfig())).methods == ()
    chosen = PTQConfig(methods=("adaround",))
    assert effective_ptq(DeployConfig(scheme=W4A8, qat=QATConfig(), ptq=chosen)) is chosen
