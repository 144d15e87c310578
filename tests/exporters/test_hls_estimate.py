"""The FPGA estimate's formulas against hand counts on one tiny convolution, and its folding
search (torch-free: the graph is built by hand)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from convdeploy.exporters import hls_estimate as est
from convdeploy.exporters.hls_config import FpgaConfig, IOStyle
from convdeploy.exporters.opgraph import Op, OpGraph, OpKind, QParams, infer_shapes

Q = QParams(0.05, 128, 8, False)


def _graph(weight_max: int = 100) -> OpGraph:
    """input (4, 8, 8) -> 3x3 conv, 4 -> 8 channels, no padding (6x6 out) -> output."""
    rng = np.random.default_rng(0)
    w = rng.integers(-weight_max, weight_max + 1, size=(8, 4, 3, 3))
    w[0, 0, 0, 0] = weight_max
    conv = Op(OpKind.CONV, ("q",), "c", "conv", weight=w, weight_scale=np.full(8, 0.01),
              bias=np.zeros(8, dtype=np.int64),
              attrs={"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1)})
    ops = [Op(OpKind.QUANTIZE, ("x",), "q", "quant"), conv,
           Op(OpKind.DEQUANTIZE, ("c",), "y", "dequant")]
    return OpGraph(ops, {"q": Q, "c": Q}, "x", "y", (4, 8, 8))


def test_hand_counts_of_an_int8_conv_with_reuse_9():
    g = _graph()
    cost = est.layer_cost("l0", g.ops[1], infer_shapes(g), g.quant, 9, IOStyle.STREAM)
    # 3*3*4*8 = 288 MACs per output pixel; 36 pixels
    assert cost.macs == 288 * 36
    assert cost.multipliers == 288 // 9 == 32
    assert cost.cycles == (9 + 6) * 36  # hls4ml: (ReuseFactor + pipeline depth) per pixel
    assert cost.dsp == 32 // 2 + 4  # two int8 MACs per DSP48E2, one 32x32 requantizer
    # adders: 32 multipliers x (8 + 8 + ceil(log2 288) = 25) bits; no LUT multipliers
    assert cost.lut == 32 * 25
    # weights: ceil(32 x 8 / 36) = 8 BRAM18 wide, 9 deep; output 8*6*6 codes x 8 bits,
    # ping-pong: 4,608 bits -> 1 BRAM18
    assert cost.bram18 == 8 + 1


def test_4bit_weights_use_lut_multipliers():
    g = _graph(weight_max=7)
    cost = est.layer_cost("l0", g.ops[1], infer_shapes(g), g.quant, 9, IOStyle.PARALLEL)
    assert cost.weight_bits == 4 and cost.dsp == 4  # only the requantizer
    assert est.lut_multiplier(4, 8) == 36 and est.lut_multiplier(8, 8) == 80  # FINN-R
    assert cost.lut == 32 * (4 + 8 + math.ceil(math.log2(288))) + 32 * 36


def test_memory_model():
    assert est.memory(64 * 8, depth=64) == (0, 8, 0)  # 512 bits: LUT-RAM, 64 bits a LUT
    assert est.memory(100_000, depth=5000) == (math.ceil(100_000 / 18_432), 0, 0)
    assert est.memory(800, depth=1) == (0, 0, 800)  # fully parallel: registers


def test_folding_search_meets_an_fps_target_and_fits_the_part():
    g = _graph()
    fast = est.estimate(g, FpgaConfig())
    assert fast.fits() and fast.search.startswith("fastest folding")
    # fully parallel (ReuseFactor 1) is the fastest possible and still fits this tiny layer
    assert fast.layers[0].reuse == 1
    slow = est.estimate(g, FpgaConfig(fps=100_000))
    # 2,000 cycles a frame at 200 MHz: (R + 6) * 36 <= 2000 -> R = 49, the slowest that meets it
    assert slow.layers[0].reuse == 49 and slow.cycles_per_frame() == 55 * 36 <= 2000
    fixed = est.estimate(g, FpgaConfig(reuse=16))
    assert next(c for c in fixed.layers if c.multipliers).multipliers == 288 // 16
    d = fast.to_dict()
    assert d["label"].startswith("analytical estimate") and d["budget"]["dsp"] == 360


def test_unknown_part_and_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="unknown FPGA part"):
        FpgaConfig(part="xc7a35t")
    with pytest.raises(ValueError, match="clock"):
        FpgaConfig(clock_mhz=0)
