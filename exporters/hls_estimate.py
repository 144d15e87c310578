"""Analytical resource and latency estimate of the generated HLS project, and the folding search.

Labelled everywhere as an analytical estimate, not synthesis: learned and analytical predictors
are still off by 10-30% against Vivado, and control logic is not counted (datapath only:
multipliers, adders, weight and activation memories). The models and their sources:

- multipliers and cycles (hls4ml, ``nnet_conv2d``/``nnet_dense`` with ReuseFactor R): a layer
  with M multiply-accumulates per output pixel has ``ceil(M / R)`` multipliers, initiation
  interval R per output pixel, and ``(R + 6) * pixels`` cycles (6: pipeline depth);
- DSP48E2 packing (Xilinx WP486/WP487): two int8 x int8 products sharing an operand per DSP;
  a 16-bit activation takes one DSP per product; each 32x32-bit requantization multiplier takes
  4 DSPs (27x18 tiles: ceil(32/27) * ceil(32/18));
- LUT multipliers for <= 4-bit weights (FINN-R, Blott et al. 2018): ``(2 * ceil((W + A) / 6) -
  1) * (W + A)`` LUTs (80 for 8x8, 36 for 4x8); adders: one LUT per accumulator bit per
  multiplier, accumulator width ``W + A + ceil(log2 M)``;
- weight memory (FINN-R): ``ceil(multipliers * W / 36) * ceil(R / 512)`` BRAM18 read in parallel
  (512 x 36 mode), registers when R = 1; activation buffers as the generated code declares them:
  one per layer output (``io_parallel``), two for DATAFLOW's ping-pong (``io_stream``), in BRAM18
  (18,432 bits) above 1,024 bits, LUT-RAM (64 bits per LUT) below;
- throughput: DATAFLOW (``io_stream``) overlaps frames, fps = clock / the slowest layer's cycles;
  ``io_parallel`` runs layers in turn, fps = clock / the sum. Latency is the sum either way.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .hls_config import FpgaConfig, IOStyle, Part
from .opgraph import OpGraph, OpKind, infer_shapes

LABEL = "analytical estimate (hls4ml/FINN-R models), not synthesis"
PIPELINE_DEPTH = 6
BRAM18_BITS = 18_432
LUTRAM_BITS = 64
REQUANT_DSP = 4  # one 32x32 multiplier on 27x18 DSP48E2 tiles
_REQUANTIZERS = {OpKind.CONV: 1, OpKind.DEPTHWISE_CONV: 1, OpKind.FULLY_CONNECTED: 1,
                 OpKind.ADD: 3, OpKind.SUB: 3, OpKind.MUL: 1, OpKind.MEAN: 1,
                 OpKind.REQUANTIZE: 1, OpKind.LEAKY_RELU: 2, OpKind.PRELU: 2}
WEIGHTED = (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.FULLY_CONNECTED)


def lut_multiplier(w_bits: int, a_bits: int) -> int:
    """LUTs of one W x A multiplier in fabric (FINN-R)."""
    n = w_bits + a_bits
    return (2 * math.ceil(n / 6) - 1) * n


def dsp_for(multipliers: int, w_bits: int, a_bits: int) -> int:
    """DSP48E2 slices for ``multipliers`` MAC units: none for <= 4-bit weights (LUTs), two
    int8 MACs per DSP (operand sharing), one per DSP above 8-bit activations."""
    if w_bits <= 4:
        return 0
    return math.ceil(multipliers / 2) if a_bits <= 8 else multipliers


def memory(bits: int, *, parallel_words: int = 1, word_bits: int = 0, depth: int = 1
           ) -> tuple[int, int, int]:
    """(BRAM18, LUT-RAM LUTs, flip-flops) holding ``bits``: registers when fully parallel
    (depth 1), LUT-RAM below 1,024 bits, else BRAM18 in 512 x 36 mode (FINN-R)."""
    if bits == 0:
        return 0, 0, 0
    if depth <= 1:
        return 0, 0, bits
    if bits <= 1024:
        return 0, math.ceil(bits / LUTRAM_BITS), 0
    if parallel_words > 1:
        return math.ceil(parallel_words * word_bits / 36) * math.ceil(depth / 512), 0, 0
    return math.ceil(bits / BRAM18_BITS), 0, 0


@dataclass(frozen=True)
class LayerCost:
    ident: str
    name: str
    kind: str
    macs: int  # per frame
    weight_bits: int
    act_bits: int
    reuse: int
    multipliers: int
    cycles: int
    dsp: int
    lut: int
    ff: int
    bram18: int


@dataclass
class Estimate:
    part: Part
    clock_mhz: float
    io: IOStyle
    layers: list[LayerCost]
    search: str  # how the folding was chosen

    @property
    def folding(self) -> dict[str, int]:
        return {c.ident: c.reuse for c in self.layers if c.multipliers}

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(c, k) for c in self.layers)
                for k in ("macs", "multipliers", "dsp", "lut", "ff", "bram18")}

    def cycles_per_frame(self) -> int:
        cycles = [c.cycles for c in self.layers]
        return max(cycles) if self.io is IOStyle.STREAM else sum(cycles)

    def fits(self) -> bool:
        return all(v <= 1.0 for v in self.utilisation().values())

    def utilisation(self) -> dict[str, float]:
        t, p = self.totals(), self.part
        return {"dsp": t["dsp"] / p.dsp, "lut": t["lut"] / p.lut, "ff": t["ff"] / p.ff,
                "bram18": t["bram18"] / p.bram18}

    def to_dict(self) -> dict:
        hz = self.clock_mhz * 1e6
        return {"label": LABEL, "part": self.part.name, "board": self.part.board,
                "clock_mhz": self.clock_mhz, "io": self.io.value, "folding_search": self.search,
                "totals": self.totals(),
                "budget": {"dsp": self.part.dsp, "lut": self.part.lut, "ff": self.part.ff,
                           "bram18": self.part.bram18},
                "utilisation": {k: round(v, 4) for k, v in self.utilisation().items()},
                "fits": self.fits(),
                "latency_ms": round(sum(c.cycles for c in self.layers) / hz * 1e3, 4),
                "fps": round(hz / self.cycles_per_frame(), 2),
                "layers": [asdict(c) for c in self.layers]}


def _layer_shapes(graph: OpGraph):
    from .hls_writer import identifier

    shapes = infer_shapes(graph)
    for index, op in enumerate(graph.ops[1:-1]):
        yield identifier(index, op.name), op, shapes


def _weighted(op, shapes) -> tuple[int, int]:
    """(MACs per output pixel, output pixels) of a conv or FC layer."""
    if op.kind is OpKind.FULLY_CONNECTED:
        x = shapes[op.inputs[0]]
        return int(op.weight.size), int(np.prod(x[1:-1]))
    y = shapes[op.output]
    return int(op.weight.size), int(y[2] * y[3])


def layer_cost(ident: str, op, shapes, quant, reuse: int, io: IOStyle) -> LayerCost:
    from .hls_writer import weight_bits

    q_out = quant[op.output]
    a_bits = max(quant[i].bits for i in op.inputs)
    out_elems = int(np.prod(shapes[op.output][1:]))
    buffers = 2 if io is IOStyle.STREAM else 1
    act_bram, act_lut, act_ff = memory(out_elems * q_out.bits * buffers, depth=out_elems)
    requant_dsp = REQUANT_DSP * _REQUANTIZERS.get(op.kind, 0)
    if op.kind not in WEIGHTED:
        elems = max(out_elems, *(int(np.prod(shapes[i][1:])) for i in op.inputs))
        return LayerCost(ident, op.name, op.kind.value, 0, 0, a_bits, 1, 0,
                         elems + PIPELINE_DEPTH, requant_dsp, act_lut, act_ff, act_bram)
    per_pixel, pixels = _weighted(op, shapes)
    reuse = max(1, min(reuse, per_pixel))
    mults = math.ceil(per_pixel / reuse)
    w_bits = weight_bits(op.weight)
    acc_bits = w_bits + a_bits + math.ceil(math.log2(max(per_pixel, 2)))
    lut = mults * acc_bits + act_lut
    if w_bits <= 4:
        lut += mults * lut_multiplier(w_bits, a_bits)
    w_bram, w_lut, w_ff = memory(op.weight.size * w_bits, parallel_words=mults,
                                 word_bits=w_bits, depth=reuse)
    return LayerCost(ident, op.name, op.kind.value, per_pixel * pixels, w_bits, a_bits, reuse,
                     mults, (reuse + PIPELINE_DEPTH) * pixels,
                     dsp_for(mults, w_bits, a_bits) + requant_dsp, lut + w_lut,
                     act_ff + w_ff, act_bram + w_bram)


def _costs(graph: OpGraph, io: IOStyle, reuse_of) -> list[LayerCost]:
    return [layer_cost(ident, op, shapes, graph.quant, reuse_of(op, shapes), io)
            for ident, op, shapes in _layer_shapes(graph)]


def _reuse_for_cap(cap: int):
    """The largest ReuseFactor whose cycles stay within ``cap`` (fewest multipliers)."""
    def reuse(op, shapes) -> int:
        if op.kind not in WEIGHTED:
            return 1
        per_pixel, pixels = _weighted(op, shapes)
        return max(1, min(per_pixel, cap // max(pixels, 1) - PIPELINE_DEPTH))
    return reuse


def estimate(graph: OpGraph, config: FpgaConfig = FpgaConfig()) -> Estimate:
    """The folding and its estimate: the configured ReuseFactor, else the slowest folding
    meeting ``config.fps``, else the fastest folding that fits the part (bisection on the
    cycle budget per layer; resources fall as the budget grows)."""
    io, part, hz = config.io, config.budget, config.clock_mhz * 1e6

    def at(cap: int, search: str) -> Estimate:
        return Estimate(part, config.clock_mhz, io, _costs(graph, io, _reuse_for_cap(cap)),
                        search)

    if config.reuse is not None:
        fixed = _costs(graph, io, lambda op, shapes: config.reuse)
        return Estimate(part, config.clock_mhz, io, fixed, f"ReuseFactor {config.reuse}")
    slowest = at(1 << 62, "")
    high = max(c.cycles for c in slowest.layers)
    if config.fps is not None:
        frame = int(hz / config.fps)
        low, top = 1, high
        # the largest per-layer budget whose frame time meets the target
        while low < top:
            mid = (low + top + 1) // 2
            if at(mid, "").cycles_per_frame() <= frame:
                low = mid
            else:
                top = mid - 1
        return at(low, f"slowest folding meeting {config.fps:g} fps")
    if not slowest.fits():
        slowest.search = "does not fit even fully folded (ReuseFactor = MACs per pixel)"
        return slowest
    low, top = 1, high
    while low < top:  # the smallest per-layer budget that still fits
        mid = (low + top) // 2
        if at(mid, "").fits():
            top = mid
        else:
            low = mid + 1
    return at(low, f"fastest folding that fits {part.name}")
