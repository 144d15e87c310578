"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Each weight is rounded up or down by a learned choice instead of to nearest. Per layer, in graph
order, a continuous variable ``V`` per weight defines the soft rounding
``h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)`` (zeta 1.1, gamma -0.1) and
``W~ = s * clamp(floor(W / s) + h(V), qmin, qmax)``. Adam minimises the layer's output error plus
the regulariser ``lam * sum(1 - |2h - 1|^beta)``, with beta annealed from 20 to 2 after a 20%
warm-up, which drives every ``h`` to 0 or 1. The reconstruction is asymmetric: the input comes
from the quantized model (previous layers already rounded, activations quantized) and the target
is the float layer on the float input, through the layer's ReLU/ReLU6, so each layer also
corrects the error accumulated before it.

The result is written back as weights that lie exactly on the quantization grid, so the
weight quantizer, the Encodings and every exporter reproduce the learned rounding unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .fakequant import Mode
from .graph import set_attr_tensor
from .layers import WeightedLayer, collect, weighted_layers

ZETA, GAMMA = 1.1, -0.1


@dataclass
class LayerResult:
    layer: str
    mse_nearest: float
    mse_adaround: float
    flipped: float  # share of weights rounded away from nearest


@dataclass
class AdaRoundResult:
    layers: list[LayerResult] = field(default_factory=list)


def _rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _init_v(rest: torch.Tensor) -> torch.Tensor:
    """V such that h(V) equals the fractional part (start at the float weight)."""
    p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


def _output_mse(layer, x, target, weight, bias) -> float:
    with torch.no_grad():
        err = 0.0
        for i in range(0, len(x), 256):
            out = layer.apply(x[i:i + 256], weight, bias)
            err += float(((out - target[i:i + 256]) ** 2).sum())
        return err / target.numel()


def round_layer(layer: WeightedLayer, weight: torch.Tensor, bias: torch.Tensor | None,
                x_q: torch.Tensor, target: torch.Tensor, *, iters: int, batch: int,
                lam: float, lr: float, gen: torch.Generator) -> tuple[torch.Tensor, LayerResult]:
    """Learn the rounding of one layer; returns the grid-exact weight and its statistics."""
    wq = layer.weight_q
    scale, _ = wq.qparams(weight)
    scale = scale.detach()
    w_div = weight.detach() / scale
    floor = torch.floor(w_div)
    v = _init_v(w_div - floor).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    qmin, qmax = wq.qmin, wq.qmax
    warmup = int(0.2 * iters)
    bias = None if bias is None else bias.detach()
    for it in range(iters):
        idx = torch.randint(0, len(x_q), (min(batch, len(x_q)),), generator=gen)
        h = _rectified_sigmoid(v)
        w_soft = scale * torch.clamp(floor + h, qmin, qmax)
        out = layer.apply(x_q[idx], w_soft, bias)
        diff = (out - target[idx]) ** 2
        rec = diff.sum(1).mean() if diff.dim() > 1 else diff.mean()
        if it < warmup:
            loss = rec
        else:
            beta = 20 + (2 - 20) * (it - warmup) / max(1, iters - warmup)
            loss = rec + lam * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        hard = torch.clamp(floor + (v >= 0).float(), qmin, qmax) * scale
        nearest = torch.clamp(torch.round(w_div), qmin, qmax) * scale
        result = LayerResult(
            layer=layer.path or layer.weight_attr,
            mse_nearest=_output_mse(layer, x_q, target, nearest, bias),
            mse_adaround=_output_mse(layer, x_q, target, hard, bias),
            flipped=float((hard != nearest).float().mean()))
    return hard, result


def adaround(qm, batches: list[torch.Tensor], reference, *, iters: int = 2000, batch: int = 32,
             lam: float = 0.01, lr: float = 1e-3, seed: int = 0,
             progress: bool = True) -> AdaRoundResult:
    """AdaRound every quantized conv/linear of ``qm`` (calibrated) in place. ``reference`` is a
    copy of ``qm`` whose float mode (OFF) computes the original float model."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    layers = [l for l in weighted_layers(qm.graph) if l.weight_q is not None]
    ref_layers = {l.weight_attr: l for l in weighted_layers(reference.graph)}
    result = AdaRoundResult()
    done: set[str] = set()
    bar = tqdm(layers, desc="adaround", unit="layer", disable=not progress, leave=False)
    for layer in bar:
        if layer.weight_q.key in done:
            continue  # a shared weight is rounded once, for its first user
        ref = ref_layers[layer.weight_attr]
        x_fp = collect(reference, [ref.node.args[0]], batches, Mode.OFF)[ref.node.args[0]]
        weight = ref.weight(reference.graph).detach()
        bias = ref.bias(reference.graph)
        with torch.no_grad():
            target = torch.cat([layer.apply(x_fp[i:i + 256], weight, bias)
                                for i in range(0, len(x_fp), 256)])
        del x_fp
        x_q = collect(qm, [layer.node.args[0]], batches, Mode.QUANT)[layer.node.args[0]]
        with torch.enable_grad():
            hard, stats = round_layer(layer, weight, bias, x_q, target, iters=iters, batch=batch,
                                      lam=lam, lr=lr, gen=gen)
        set_attr_tensor(qm.graph, layer.weight_attr, hard.float())
        done.add(layer.weight_q.key)
        result.layers.append(stats)
        bar.set_postfix(mse=f"{stats.mse_adaround:.3g}<{stats.mse_nearest:.3g}")
    return result


def summary(result: AdaRoundResult) -> dict:
    gains = [r.mse_nearest / r.mse_adaround for r in result.layers if r.mse_adaround > 0]
    return {"layers": len(result.layers),
            "output_mse_ratio_geomean": math.exp(sum(map(math.log, gains)) / len(gains))
            if gains else None,
            "per_layer": [vars(r) for r in result.layers]}
