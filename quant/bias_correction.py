"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", section 4.2).

Quantized weights shift the mean of a layer's output: ``E[W~ x~] != E[W x]``. Over the calibration
data, layer by layer in graph order (each correction changes what later layers see), the
per-channel mean of the simulated output is compared with the float model's and the difference
is subtracted from the bias. Layers without a bias are left as they are.
"""
from __future__ import annotations

import torch
from torch.fx import Interpreter, Node

from .fakequant import Mode
from .graph import get_attr_tensor, set_attr_tensor
from .layers import StopRun, weighted_layers


class _ChannelMeans(Interpreter):
    """Per-channel sums and counts of chosen nodes' outputs (axis 1), without keeping values;
    stops once every chosen node has run."""

    def __init__(self, gm, wanted: set[Node], sums: dict, counts: dict) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.wanted, self.sums, self.counts, self.seen = wanted, sums, counts, set()

    def run_node(self, n: Node):
        out = super().run_node(n)
        if n in self.wanted:
            dims = [d for d in range(out.dim()) if d != 1]
            self.sums[n] = self.sums.get(n, 0) + out.detach().double().sum(dim=dims)
            self.counts[n] = self.counts.get(n, 0) + out.numel() // out.shape[1]
            self.seen.add(n)
            if self.seen == self.wanted:
                raise StopRun
        return out


@torch.no_grad()
def channel_means(qm, nodes: list[Node], batches: list[torch.Tensor],
                  mode: Mode) -> dict[Node, torch.Tensor]:
    """Per-channel mean of each node's output over all batches, quantizers in ``mode``."""
    sums: dict[Node, torch.Tensor] = {}
    counts: dict[Node, int] = {}
    with qm.using(mode):
        for x in batches:
            try:
                _ChannelMeans(qm.graph, set(nodes), sums, counts).run(x)
            except StopRun:
                pass
    return {n: sums[n] / counts[n] for n in nodes}


@torch.no_grad()
def correct_biases(qm, batches: list[torch.Tensor], reference, *,
                   progress: bool = True) -> dict:
    """Correct every quantized layer's bias of ``qm`` in place; ``reference`` computes the float
    model in mode OFF. Returns the mean absolute shift removed per layer."""
    from tqdm.auto import tqdm

    layers = [l for l in weighted_layers(qm.graph) if l.weight_q is not None and l.bias_attr]
    ref_nodes = {l.weight_attr: l.node for l in weighted_layers(reference.graph)}
    float_means = channel_means(reference, [ref_nodes[l.weight_attr] for l in layers], batches,
                                Mode.OFF)
    shifts = {}
    for layer in tqdm(layers, desc="bias correction", unit="layer", disable=not progress,
                      leave=False):
        q_mean = channel_means(qm, [layer.node], batches, Mode.QUANT)[layer.node]
        shift = q_mean - float_means[ref_nodes[layer.weight_attr]]
        bias = get_attr_tensor(qm.graph, layer.bias_attr).detach().double()
        set_attr_tensor(qm.graph, layer.bias_attr, (bias - shift).float())
        shifts[layer.path or layer.weight_attr] = float(shift.abs().mean())
    return shifts
