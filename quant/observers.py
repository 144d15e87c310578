"""Range observers and the choice of a clipping range (minmax, percentile, MSE).

Calibration runs in two passes when a method needs a histogram: the first records min/max, the
second fills a fixed-range histogram (as TensorRT and the ONNX Runtime calibrators do), so memory
stays constant however many calibration images there are.
"""
from __future__ import annotations

import math

import torch

from .scheme import Calibration, TensorQuant

HISTOGRAM_BINS = 2048


def affine_params(lo: float, hi: float, tq: TensorQuant) -> tuple[float, int]:
    """Scale and zero point that map [lo, hi] onto the integer grid, with 0 exactly representable.

    Zero must be a grid point: padding and ReLU produce exact zeros, and an offset zero would bias
    every padded convolution.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if tq.symmetric:
        amax = max(abs(lo), abs(hi))
        amax = amax if amax > 0 else 1e-8
        return amax / tq.qmax, 0
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / (tq.qmax - tq.qmin)
    zero_point = int(round(tq.qmin - lo / scale))
    return scale, max(tq.qmin, min(tq.qmax, zero_point))


def symmetric_params(absmax: torch.Tensor, tq: TensorQuant) -> torch.Tensor:
    """Per-channel (or per-tensor) symmetric scales ``absmax / qmax``; all-zero channels get a tiny
    positive scale so that the encoding stays valid."""
    absmax = absmax.detach().double()
    return torch.where(absmax > 0, absmax / tq.qmax, torch.full_like(absmax, 1e-8)).float()


class RangeObserver:
    """Records min/max, then (second pass) a histogram over that fixed range."""

    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        self.bins = bins
        self.min = math.inf
        self.max = -math.inf
        self.histogram: torch.Tensor | None = None
        self.collect_histogram = False
        self.nonfinite = 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            self.nonfinite += int((~finite).sum())
            x = x[finite]
        if x.numel() == 0:
            return
        if not self.collect_histogram:
            self.min = min(self.min, float(x.min()))
            self.max = max(self.max, float(x.max()))
            return
        if self.histogram is None:
            self.histogram = torch.zeros(self.bins, dtype=torch.float64)
        lo, hi = self._hist_range()
        self.histogram += torch.histc(x, bins=self.bins, min=lo, max=hi).double()

    def _hist_range(self) -> tuple[float, float]:
        lo, hi = min(self.min, 0.0), max(self.max, 0.0)
        return lo, (hi if hi > lo else lo + 1e-8)

    @property
    def seen(self) -> bool:
        return self.max >= self.min

    def bin_centers(self) -> torch.Tensor:
        lo, hi = self._hist_range()
        width = (hi - lo) / self.bins
        return torch.linspace(lo + width / 2, hi - width / 2, self.bins, dtype=torch.float64)

    def select_range(self, method: Calibration, tq: TensorQuant,
                     percentile: float = 99.99) -> tuple[float, float]:
        if not self.seen:
            raise ValueError("observer saw no finite values")
        if method is Calibration.MINMAX or self.histogram is None:
            return self.min, self.max
        if method is Calibration.PERCENTILE:
            return self._percentile_range(percentile)
        return self._mse_range(tq)

    def _percentile_range(self, percentile: float) -> tuple[float, float]:
        cdf = torch.cumsum(self.histogram, 0) / self.histogram.sum()
        centers = self.bin_centers()
        tail = 1.0 - percentile / 100.0
        lo_idx = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype)))
        hi_idx = int(torch.searchsorted(cdf, torch.tensor(1.0 - tail, dtype=cdf.dtype)))
        lo = float(centers[min(lo_idx, self.bins - 1)]) if self.min < 0 else 0.0
        hi = float(centers[min(hi_idx, self.bins - 1)])
        return min(lo, 0.0), max(hi, 0.0)

    def _mse_range(self, tq: TensorQuant, steps: int = 48) -> tuple[float, float]:
        """The clipping range with the least expected quantization MSE over the histogram.

        A grid over shrink factors of both ends (one end when the other is zero, as after ReLU);
        the error of a bin is evaluated at its center, which at 2048 bins is far finer than the
        256-level grid being chosen.
        """
        centers = self.bin_centers()
        weights = self.histogram / self.histogram.sum()
        lo0, hi0 = min(self.min, 0.0), max(self.max, 0.0)
        factors = torch.linspace(1.0 / steps, 1.0, steps, dtype=torch.float64)
        lo_c = lo0 * factors if lo0 < 0 else torch.zeros(1, dtype=torch.float64)
        hi_c = hi0 * factors if hi0 > 0 else torch.zeros(1, dtype=torch.float64)
        lo_g, hi_g = torch.meshgrid(lo_c, hi_c, indexing="ij")
        lo_g, hi_g = lo_g.reshape(-1, 1), hi_g.reshape(-1, 1)
        if tq.symmetric:
            amax = torch.maximum(lo_g.abs(), hi_g.abs()).clamp_min(1e-12)
            scale, zp = amax / tq.qmax, torch.zeros_like(amax)
        else:
            scale = ((hi_g - lo_g) / (tq.qmax - tq.qmin)).clamp_min(1e-12)
            zp = torch.clamp(torch.round(tq.qmin - lo_g / scale), tq.qmin, tq.qmax)
        q = torch.clamp(torch.round(centers / scale) + zp, tq.qmin, tq.qmax)
        err = (((q - zp) * scale - centers) ** 2 * weights).sum(dim=1)
        best = int(torch.argmin(err))
        return float(lo_g[best]), float(hi_g[best])
