import numpy as np
import torch

from convdeploy.quant.observers import RangeObserver, affine_params
from convdeploy.quant.scheme import UINT8_ACT, Calibration, TensorQuant


def _observed(x: torch.Tensor) -> RangeObserver:
    obs = RangeObserver()
    obs.update(x)
    obs.collect_histogram = True
    obs.update(x)
    return obs


UINT4_ACT = TensorQuant(bits=4, symmetric=False, per_channel=False, signed=False,
                        narrow_range=False)


def _quant_mse(x: torch.Tensor, lo: float, hi: float, tq: TensorQuant = UINT8_ACT) -> float:
    scale, zp = affine_params(lo, hi, tq)
    q = torch.clamp(torch.round(x / scale) + zp, tq.qmin, tq.qmax)
    return float((((q - zp) * scale - x) ** 2).mean())


def heavy_tailed(n=200_000, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, generator=gen))
    x[:20] = 40.0  # rare outliers stretch the min/max range
    return x


def test_minmax_is_exact_range():
    x = torch.tensor([-1.0, 0.5, 3.0])
    obs = _observed(x)
    assert obs.select_range(Calibration.MINMAX, UINT8_ACT) == (-1.0, 3.0)


def test_percentile_clips_outliers():
    x = heavy_tailed()
    lo, hi = _observed(x).select_range(Calibration.PERCENTILE, UINT8_ACT, 99.9)
    assert lo == 0.0 and 2.0 < hi < 5.0


def test_mse_range_beats_minmax_on_long_tails():
    """On a Laplace distribution at 4 bits the optimal clip is ~5b while min/max is ~12b
    (Banner et al., ACIQ): the MSE range must give a measurably lower error."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(200_000, generator=gen) - 0.5
    x = -torch.sign(u) * torch.log1p(-2 * u.abs())  # Laplace(0, 1) by inverse CDF
    obs = _observed(x)
    mse_range = obs.select_range(Calibration.MSE, UINT4_ACT)
    minmax_range = obs.select_range(Calibration.MINMAX, UINT4_ACT)
    assert _quant_mse(x, *mse_range, UINT4_ACT) < 0.6 * _quant_mse(x, *minmax_range, UINT4_ACT)


def test_nonfinite_values_are_counted_not_used():
    obs = RangeObserver()
    obs.update(torch.tensor([1.0, float("nan"), float("inf"), -2.0]))
    assert obs.nonfinite == 2 and (obs.min, obs.max) == (-2.0, 1.0)
    assert np.isfinite(obs.min)
