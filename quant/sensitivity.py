"""Per-layer quantization sensitivity: quantize one layer at a time (its weights and its output
activation), everything else float, and measure how far the model output moves (SQNR) and how
much accuracy it costs. The worst layers are the ones to keep at 8 bits or in float."""
from __future__ import annotations

import torch

from .fakequant import Mode
from .layers import weighted_layers


def _sqnr_db(ref: torch.Tensor, got: torch.Tensor) -> float:
    noise = float(((ref - got) ** 2).sum())
    return float("inf") if noise == 0 else 10 * torch.log10((ref**2).sum() / noise).item()


def channel_range_spread(weight: torch.Tensor) -> float:
    """Largest over median per-output-channel range ``max|w|``: how many times coarser a
    per-tensor grid is than a per-channel one for a typical channel (1.0 = per-channel buys
    nothing; BN-folded depthwise filters of ImageNet MobileNetV2 reach ~100, DFQ Fig. 2)."""
    ranges = weight.detach().abs().flatten(1).amax(1)
    median = float(ranges.median())
    return float("inf") if median == 0 else float(ranges.max()) / median


def _run(qm, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([qm.graph(x[i:i + 500]) for i in range(0, len(x), 500)])


def layer_sensitivity(qm, x: torch.Tensor, labels=None) -> list[dict]:
    """One row per quantized conv/linear of calibrated ``qm``: output SQNR (dB) against float,
    the channel range spread of its (folded) weights and, with ``labels``, the top-1 accuracy
    change when only that layer is quantized."""
    quantizers = qm.quantizers
    with qm.using(Mode.OFF):
        ref = _run(qm, x)
    base = float((ref.argmax(1).numpy() == labels).mean()) if labels is not None else None
    rows = []
    previous = {k: q.mode for k, q in quantizers.items()}
    try:
        for layer in weighted_layers(qm.graph):
            if layer.weight_q is None:
                continue
            qm.set_mode(Mode.OFF)
            for q in (layer.weight_q, layer.output_q):
                if q is not None:
                    q.mode = Mode.QUANT
            out = _run(qm, x)
            weight = layer.weight(qm.graph)
            row = {"layer": layer.path or layer.weight_attr, "weight_bits": layer.weight_q.tq.bits,
                   "parameters": int(weight.numel()),
                   "channel_range_spread": channel_range_spread(weight),
                   "sqnr_db": _sqnr_db(ref, out)}
            if labels is not None:
                row["accuracy_delta"] = float((out.argmax(1).numpy() == labels).mean()) - base
            rows.append(row)
    finally:
        for k, q in quantizers.items():
            q.mode = previous[k]
    return rows
