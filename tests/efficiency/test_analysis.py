"""The join of kernel times to layers: mapping rules, shares, bounds (constructed timelines)."""
from __future__ import annotations

import math

import onnx
import pytest

from convdeploy.efficiency.analysis import analyse, layer_of_kernel
from convdeploy.efficiency.costs import GraphIndex
from convdeploy.efficiency.peak import Peak
from convdeploy.efficiency.timeline import KernelTime, Timeline


@pytest.fixture(scope="module")
def index():
    from tests.artifacts import tiny_artifacts

    return GraphIndex(onnx.load(str(tiny_artifacts()[1].path)))


@pytest.mark.parametrize("kernel,layer", [
    # ORT: a fused QLinearConv keeps the weight initializer, not the node name
    (KernelTime("node_conv2d_1_token_4", "QLinearConv", 1, "int8",
                initializers=("relu.scale", "dw.0.weight.quantized")), "dw.0"),
    # ORT float NCHWc: weights reordered (renamed), the bias keeps its name
    (KernelTime("relu_nchwc", "Conv", 1, "float", initializers=("reorder", "stem.0.bias")),
     "stem.0"),
    # OpenVINO: the exported node's name with a suffix
    (KernelTime("node_conv2d_2/WithoutBiases", "Convolution:brgconv_avx512_I8", 1, "int8",
                originals=("node_conv2d_2/WithoutBiases",)), "down.0"),
    # a kernel named as the exported Add
    (KernelTime("node_add_75", "QLinearAdd", 1, "int8", originals=("node_add_75",)),
     "Add node_add_75"),
    # LiteRT: an op found by its output tensor (the quantizer after the layer)
    (KernelTime("3:MAX_POOL_2D", "MAX_POOL_2D", 1, "int8",
                tensors=("qpoint_14.quantized",)), "MaxPool node_max_pool2d"),
])
def test_kernels_map_to_layers(index, kernel, layer):
    assert layer_of_kernel(kernel, index) == layer


def test_layout_conversions_stay_runtime_kernels(index):
    reorder = KernelTime("node_conv2d_1_abcd_acdb_node_conv2d_2", "Reorder:jit_uni_I8", 1,
                         "int8", originals=("node_conv2d_1_abcd_acdb_node_conv2d_2",))
    assert layer_of_kernel(reorder, index) is None


def _timeline(run_ms: float) -> Timeline:
    return Timeline((
        KernelTime("a", "QLinearConv", 0.30, "int8", initializers=("stem.0.weight.quantized",)),
        KernelTime("b", "QLinearConv", 0.10, "int8", initializers=("down.0.weight.quantized",)),
        KernelTime("c", "QLinearConv", 0.05, "int8", initializers=("dw.0.weight.quantized",)),
        KernelTime("Transpose", "Transpose", 0.05, "int8")), run_ms, "constructed", 10)


def test_the_profilers_cost_comes_off_each_kernel_event(index):
    # the profiled run took 1.0 ms, unprofiled the model takes 0.8: 0.2 ms of profiler over
    # 4 kernel events, 0.05 ms off each (not 20% off each)
    p = analyse(_timeline(1.0), index, index.costs(), latency_ms=0.8,
                peaks={"int8": Peak(100.0, ((math.inf, 10.0),), "given")}, model="tiny",
                precision="w8a8", target="t", threads=1, batch=1)
    ms = {r.layer: r.ms for r in p.layers}
    assert ms["stem.0"] == pytest.approx(0.25) and ms["down.0"] == pytest.approx(0.05)
    assert ms["dw.0"] == pytest.approx(0.005)  # shorter than 0.05: a tenth of its record kept
    assert ms["(runtime) Transpose Transpose"] == pytest.approx(0.005)
    assert p.attributed_ms == pytest.approx(0.31) and p.unattributed_ms == pytest.approx(0.49)
    assert any("fc" in w for w in p.warnings)  # a weighted layer no kernel was mapped to


def test_self_timed_kernels_are_kept_as_recorded(index):
    """OpenVINO's counters time each node itself; the profiler's cost falls between nodes:
    kernel times stay as recorded (scaled down only if they would pass the latency)."""
    from dataclasses import replace

    peaks = {"int8": Peak(100.0, ((math.inf, 10.0),), "given")}
    kw = dict(peaks=peaks, model="tiny", precision="w8a8", target="t", threads=1, batch=1)
    p = analyse(replace(_timeline(1.0), kernels_inflated=False), index, index.costs(),
                latency_ms=0.8, **kw)
    ms = {r.layer: r.ms for r in p.layers}
    assert ms["stem.0"] == pytest.approx(0.30) and p.attributed_ms == pytest.approx(0.5)
    p = analyse(replace(_timeline(1.0), kernels_inflated=False), index, index.costs(),
                latency_ms=0.25, **kw)  # kernels sum to 0.5: scaled to the 0.25 ms latency
    assert p.attributed_ms == pytest.approx(0.25) and p.unattributed_ms == pytest.approx(0.0)


def test_measured_dispatch_is_capped_at_what_the_latency_leaves(index):
    """Self-timed kernels (0.5 ms) with 0.1 ms of dispatch each measured beside them, and a
    0.1 ms per-inference cost: against a 0.8 ms latency the dispatch (0.4 in all) is scaled
    to the 0.2 ms left, the kernels kept as recorded; against 1.2 ms all of it is kept."""
    from dataclasses import replace

    kw = dict(peaks={"int8": Peak(100.0, ((math.inf, 10.0),), "given")}, model="tiny",
              precision="w8a8", target="t", threads=1, batch=1)
    base = _timeline(1.0)
    timeline = replace(base, kernels=tuple(replace(k, dispatch_ms=0.1) for k in base.kernels),
                       kernels_inflated=False, per_inference_ms=0.1)
    p = analyse(timeline, index, index.costs(), latency_ms=0.8, **kw)
    ms = {r.layer: r.ms for r in p.layers}
    assert ms["stem.0"] == pytest.approx(0.30 + 0.05) and ms["down.0"] == pytest.approx(0.15)
    assert p.attributed_ms == pytest.approx(0.8) and p.unattributed_ms == pytest.approx(0.0)
    p = analyse(timeline, index, index.costs(), latency_ms=1.2, **kw)
    assert p.attributed_ms == pytest.approx(1.0) and p.unattributed_ms == pytest.approx(0.2)


def test_efficiency_takes_off_only_what_is_surely_inside_the_kernels(index):
    """Kernels recorded 0.5 ms against a 0.3 ms latency in a 0.6 ms profiled run: 0.05 ms per
    event is surely inside the kernel records (0.075 per event in all): the long convolution
    computes in 0.25 ms (not 0.30 * 0.3 / 0.5), capped by its time 0.225."""
    costs = {c.layer: c for c in index.costs()}
    p = analyse(_timeline(0.6), index, index.costs(), latency_ms=0.3,
                peaks={"int8": Peak(100.0, ((math.inf, 10.0),), "given")}, model="tiny",
                precision="w8a8", target="t", threads=1, batch=1)
    row = {r.layer: r for r in p.layers}
    assert row["stem.0"].ms == pytest.approx(0.225)
    assert row["stem.0"].compute_ms == pytest.approx(0.225)
    assert row["down.0"].ms == pytest.approx(0.025)  # 0.10 - 0.075
    assert row["down.0"].compute_ms == pytest.approx(0.025)  # 0.10 - 0.05, capped
    assert row["stem.0"].gmacs == pytest.approx(costs["stem.0"].macs / 0.225 / 1e6)


def test_bounds_efficiency_and_the_over_peak_warning(index):
    costs = {c.layer: c for c in index.costs()}
    peak = Peak(0.1, ((1e3, 100.0), (math.inf, 1.0)), "given")  # 0.1 GMAC/s: tiny on purpose
    p = analyse(_timeline(0.5), index, index.costs(), latency_ms=0.5, peaks={"int8": peak},
                model="tiny", precision="w8a8", target="t", threads=1, batch=1)
    row = {r.layer: r for r in p.layers}
    stem = row["stem.0"]
    compute_ms = costs["stem.0"].macs / 0.1e6
    memory_ms = costs["stem.0"].bytes / 1.0e6  # > 1 KB: the slower level
    assert stem.bound_ms == pytest.approx(max(compute_ms, memory_ms))
    assert stem.bound == ("compute" if compute_ms >= memory_ms else "memory")
    assert stem.efficiency == pytest.approx(costs["stem.0"].macs / 0.3 / 1e6 / 0.1)
    assert stem.efficiency > 1 and any("stem.0" in w and "under-measured" in w
                                       for w in p.warnings)
    assert p.waterline_ms == pytest.approx(sum(r.bound_ms for r in p.layers))
