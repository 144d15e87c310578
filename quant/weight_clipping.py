"""MSE-optimal weight clipping per output channel.

Round-to-nearest with the min/max range wastes 4-bit grids on rare large weights. For each
channel, the clipping range ``f * max|w|`` with the least squared quantization error
``||Q(w) - w||^2`` over a grid of shrink factors ``f`` is chosen (the weight counterpart of the
MSE activation calibration; at 4 bits it typically clips 10-30% of the range).
"""
from __future__ import annotations

import torch

from .fakequant import WeightQuantizer
from .layers import weighted_layers
from .observers import symmetric_params


@torch.no_grad()
def mse_weight_scales(weight: torch.Tensor, wq: WeightQuantizer, steps: int = 80,
                      low: float = 0.2) -> torch.Tensor:
    """The per-channel (or per-tensor) scale that minimises the weight's quantization MSE."""
    w = weight.detach().float()
    flat = w.reshape(w.shape[0], -1) if wq.tq.per_channel else w.reshape(1, -1)
    absmax = flat.abs().amax(dim=1)
    best_err = torch.full_like(absmax, float("inf"))
    best = symmetric_params(absmax, wq.tq)
    for f in torch.linspace(low, 1.0, steps):
        scale = symmetric_params(absmax * f, wq.tq)
        q = torch.clamp(torch.round(flat / scale[:, None]), wq.tq.qmin, wq.tq.qmax)
        err = ((q * scale[:, None] - flat) ** 2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, scale, best)
    return best


def clip_weights(qm) -> int:
    """Set every weight quantizer's scale to its MSE-optimal clipping; returns how many."""
    done = set()
    for layer in weighted_layers(qm.graph):
        wq = layer.weight_q
        if wq is None or wq.key in done:
            continue
        wq.scale = mse_weight_scales(layer.weight(qm.graph), wq)
        wq.initialised = True
        done.add(wq.key)
    return len(done)
