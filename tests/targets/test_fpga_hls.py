"""fpga-hls: the generated HLS C++, C-simulated with g++, equals int-reference on every layer of
seeded tiny models (every op kind the writer has), its testbench fails on a one-LSB change,
hostile layer names cannot reach the C++, and the estimate's formulas hold on hand counts."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.conftest import scratch_dir
from tests.exporters.test_integer_ops import AudioStyle, Constants, Elementwise, Gates, \
    HardSwishNet, Permutes, SplitsAndSlopes
from tests.targets.conformance import TargetConformance
from tests.targets.test_gpu_triton import OpsNet

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")


class TestFpgaHlsConformance(TargetConformance):
    """The shared template; the bound is the integer reference's own (it equals it)."""

    target_name = "fpga-hls"
    max_lsb = 2.0
    min_exact_fraction = 0.6


def _qdq(model: nn.Module, shape, scheme=None, seed: int = 0):
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import W8A8, capture, quantize

    torch.manual_seed(seed)
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randn(8, *shape, generator=gen) for _ in range(3)]
    qm = quantize(capture(model, batches[0][:2]), scheme or W8A8, batches, progress=False)
    work = scratch_dir("convdeploy-hls-") / "work"
    work.mkdir(parents=True)
    return OnnxExporter(quantized=True, example=batches[0][:2]).export(qm, work), work


def _assert_every_layer_equal(qdq, work: Path, x: np.ndarray):
    """Every layer's output codes (the C-simulation trace) and every model output equal the
    integer reference's."""
    from convdeploy.targets import registry

    target = registry.get("fpga-hls")
    assert target.check(qdq) == []
    hls = target.compile(qdq, work)
    ref = registry.get("int-reference").compile(qdq, work)
    codes = hls.input_codes(x)
    expected = ref.codes_from(hls.project.input_tensor, codes)
    for i in range(min(len(x), 3)):
        got = hls.trace(codes[i:i + 1])
        for layer in hls.project.layers:
            name = layer.op.output
            np.testing.assert_array_equal(got[name], expected[name][i:i + 1],
                                          err_msg=f"layer {layer.index} {layer.op.kind}")
    out = hls.run_codes(codes).astype(np.int64)
    np.testing.assert_array_equal(out, expected[hls.project.output_tensor].reshape(len(x), -1))
    np.testing.assert_array_equal(hls({qdq.input_name: x})[qdq.output_name],
                                  ref({qdq.input_name: x})[qdq.output_name])
    return hls


class Padded(nn.Module):
    """An explicit asymmetric pad, a dilated conv and a max pool with padding."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.conv = nn.Conv2d(3, 6, 3, dilation=2)
        self.fc = nn.Linear(6 * 5 * 6, 4)

    def forward(self, x):
        y = F.pad(torch.relu(self.stem(x)), (1, 2, 0, 1))
        y = F.max_pool2d(torch.relu(self.conv(y)), 3, stride=2, padding=1)
        return self.fc(y.flatten(1))


MODELS = {"ops-net": (OpsNet, (3, 20, 20)), "permutes": (Permutes, (3, 4, 4)),
          "audio": (AudioStyle, (32,)), "elementwise": (Elementwise, (3, 8, 8)),
          "gates": (Gates, (3, 8, 8)), "gates-tanh": (lambda: Gates("tanh"), (3, 8, 8)),
          "constants": (Constants, (3, 8, 8)), "splits-slopes": (SplitsAndSlopes, (3, 4, 4)),
          "padded": (Padded, (3, 12, 12))}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_layer_equals_int_reference(name):
    from convdeploy.exporters.opgraph import OpKind

    model, shape = MODELS[name]
    qdq, work = _qdq(model(), shape)
    x = np.random.default_rng(1).standard_normal((12, *shape)).astype(np.float32) * 2
    hls = _assert_every_layer_equal(qdq, work, x)
    if name == "padded":
        assert OpKind.PAD in {layer.op.kind for layer in hls.project.layers}


@pytest.mark.parametrize("scheme_name", ["w4a8", "w8a8-int8-act", "w8a16", "w8a8-mixed-a16"])
def test_other_schemes_equal_int_reference(scheme_name):
    from convdeploy.quant.scheme import INT8_ACT, PRESETS, LayerOverride

    scheme = (dataclasses.replace(PRESETS["w8a8"], activations=INT8_ACT)
              if scheme_name == "w8a8-int8-act" else PRESETS.get(scheme_name))
    if scheme_name == "w8a8-mixed-a16":  # 16-bit layers inside an 8-bit model: REQUANTIZEs
        scheme = PRESETS["w8a8"].with_(overrides=tuple(
            LayerOverride.parse(f"{layer}=8a16") for layer in ("dil", "dw", "se2")))
    # 16-bit activations have no lookup tables (OpsNet's sigmoid): Padded then
    model, shape = (Padded, (3, 12, 12)) if scheme_name == "w8a16" else (OpsNet, (3, 20, 20))
    qdq, work = _qdq(model(), shape, scheme)
    x = np.random.default_rng(2).standard_normal((6, *shape)).astype(np.float32) * 3
    _assert_every_layer_equal(qdq, work, x)


def _rebuild(project: Path, *defines: str, include=()):
    from convdeploy.targets.fpga_hls import build

    shutil.rmtree(project / "build")
    return build(project, defines=defines, include=include)


def test_packed_4bit_weights_and_ap_types_give_the_same_bits(tmp_path):
    """What synthesis reads (nibble-packed 4-bit weights; ap_int codes) run in C-simulation:
    the testbench (integer reference's outputs) passes with each."""
    from convdeploy.quant.scheme import PRESETS
    from convdeploy.targets import registry
    from convdeploy.targets.fpga_hls import ap_types_dir, run_testbench

    qdq, work = _qdq(OpsNet(), (3, 20, 20), PRESETS["w4a8"])
    hls = registry.get("fpga-hls").compile(qdq, work)
    project = hls.project.path
    assert any(layer.arrays and "w4_" in "".join(layer.arrays) for layer in hls.project.layers)
    _, tb, _ = _rebuild(project, "CONVDEPLOY_PACKED_W4=1")
    assert run_testbench(tb).returncode == 0
    ap_types = ap_types_dir()
    if ap_types is None:
        pytest.skip("no ap_types headers (pip install --no-deps hls4ml ships them)")
    _, tb, _ = _rebuild(project, "CONVDEPLOY_AP_TYPES", "CONVDEPLOY_PACKED_W4=1",
                        include=(ap_types,))
    done = run_testbench(tb)
    assert done.returncode == 0, done.stdout


def test_testbench_fails_on_a_one_lsb_change():
    from convdeploy.exporters import hls_scripts
    from convdeploy.targets import registry
    from convdeploy.targets.fpga_hls import run_testbench, testbench_vectors
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    work = scratch_dir("convdeploy-tb-") / "work"
    work.mkdir(parents=True)
    hls = registry.get("fpga-hls").compile(qdq, work)
    tb = hls.project.path / "build" / "testbench"
    assert run_testbench(tb).returncode == 0
    codes, expected = testbench_vectors(hls.project, registry.get("int-reference").compile(
        qdq, work))
    q = hls.project.output_q
    changed = expected.copy()
    changed[3, 1] += 1 if changed[3, 1] < q.qmax else -1
    hls_scripts.write_test_data(hls.project, codes, changed)
    done = run_testbench(tb)
    assert done.returncode == 1
    assert "sample 3 output 1" in done.stdout and "1 of" in done.stdout


HOSTILE = ['a"; system("rm -rf /tmp/x"); //', "*/ #include </etc/passwd> /*",
           "line\nbreak", ";rm -rf ~", "ünïcødé名前", "int", "off_t", "`$(reboot)`"]


def test_hostile_layer_names_cannot_reach_the_cpp():
    from convdeploy.exporters import hls_writer
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.targets.fpga_hls import build
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    graph = lower_file(qdq.path)
    for op, name in zip(graph.ops, HOSTILE * 3):
        op.name = name
    out = scratch_dir("convdeploy-hostile-")
    hls_writer.write_project(graph, out)
    text = "".join(p.read_text() for p in (out / "firmware").rglob("*.h")) + \
        (out / "firmware" / "model_top.cpp").read_text()
    assert text.isascii()
    for bad in ('"; system', "*/ #include", "\nbreak", "rm -rf", "$(", "`", "</etc"):
        assert bad not in text, bad
    (out / "tb").mkdir()
    (out / "tb" / "testbench.cpp").write_text("int main() { return 0; }\n")
    build(out)  # compiles: every identifier is generated, every comment sanitised
    for name in HOSTILE:
        assert set(hls_writer.safe_text(name)) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


def test_a_100k_weight_layer_compiles_quickly():
    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(128, 96, 3, padding=1)  # 110,592 weights
            self.fc = nn.Linear(96, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    from convdeploy.targets import registry

    qdq, work = _qdq(Wide(), (128, 6, 6))
    t0 = time.perf_counter()
    hls = registry.get("fpga-hls").compile(qdq, work)
    assert time.perf_counter() - t0 < 60
    assert hls.details["testbench"].endswith("0 of 160 outputs differ")


class Softmaxed(nn.Module):
    """SOFTMAX over channels of a pooled map and over a wide last axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv.weight.data *= 4  # wide logits: rows reach beyond the difference radius

    def forward(self, x):
        y = self.conv(x)
        return torch.softmax(y.mean((2, 3)), 1) + torch.softmax(y, -1).mean((2, 3))


@pytest.mark.parametrize("name", ["hard-swish", "softmax"])
def test_hard_swish_and_softmax_equal_int_reference(name):
    from convdeploy.exporters.opgraph import OpKind

    model = HardSwishNet() if name == "hard-swish" else Softmaxed()
    qdq, work = _qdq(model, (3, 8, 8))
    x = np.random.default_rng(3).standard_normal((16, 3, 8, 8)).astype(np.float32) * 3
    hls = _assert_every_layer_equal(qdq, work, x)
    kind = OpKind.HARD_SWISH if name == "hard-swish" else OpKind.SOFTMAX
    assert kind in {layer.op.kind for layer in hls.project.layers}


def test_check_names_what_it_cannot_generate():
    """A float island (LayerNorm) has no HLS kernel: check() names it before any work."""
    from convdeploy.targets import registry
    from tests.exporters.test_integer_ops import ConvNeXtBlockNet

    qdq, _ = _qdq(ConvNeXtBlockNet(), (3, 8, 8))
    reasons = registry.get("fpga-hls").check(qdq)
    assert any("no HLS kernel for FLOAT_ISLAND" in r for r in reasons), reasons


def test_missing_gpp_is_named(monkeypatch):
    from convdeploy.targets import fpga_hls, registry

    monkeypatch.setattr(fpga_hls.shutil, "which", lambda name: None)
    assert "g++ is not installed" in registry.get("fpga-hls").unavailable()


def test_unknown_part_is_refused_by_the_config():
    from convdeploy.exporters.hls_config import FpgaConfig

    with pytest.raises(ValueError, match="unknown FPGA part 'xc7z999'.*xczu3eg"):
        FpgaConfig(part="xc7z999")


def test_generated_project_compiles_without_warnings(tmp_path):
    from convdeploy.exporters import hls_writer
    from convdeploy.exporters.lowering import lower_file
    from tests.artifacts import tiny_artifacts

    from convdeploy.exporters.hls_config import FpgaConfig, IOStyle
    from convdeploy.exporters.hls_estimate import estimate

    _, qdq = tiny_artifacts()
    graph = lower_file(qdq.path)
    folding = estimate(graph, FpgaConfig(reuse=4)).folding
    hls_writer.write_project(graph, tmp_path / "p", config=FpgaConfig(io=IOStyle.PARALLEL),
                             folding=folding)
    assert "DATAFLOW" not in (tmp_path / "p" / "firmware" / "model_top.cpp").read_text()
    hls_writer.write_project(graph, tmp_path, folding=folding)
    top = (tmp_path / "firmware" / "model_top.cpp").read_text()
    # the folding reaches the directives: ReuseFactor 4 -> a quarter of the MACs per pixel
    assert "#pragma HLS DATAFLOW" in top and "cyclic factor=54" in top  # 3*3*3*8 / 4
    assert "MULTIPLIERS = 54" in (tmp_path / "firmware" / "parameters.h").read_text()
    done = subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror",
                           "-Wno-unknown-pragmas", "-Wno-unused-label",
                           "-Wno-unused-parameter", "-c", "firmware/model_top.cpp", "-o",
                           "top.o"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_trace_names_the_first_layer_that_diverges():
    """A weight changed in the generated C++ (as a wrong kernel would): the testbench fails and
    the per-layer trace names that layer, not a later one."""
    from convdeploy.targets import registry
    from convdeploy.targets.fpga_hls import HlsRunnable, first_divergence, run_testbench
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    work = scratch_dir("convdeploy-trace-") / "work"
    work.mkdir(parents=True)
    hls = registry.get("fpga-hls").compile(qdq, work)
    layer = next(layer for layer in hls.project.layers if layer.op.kind.name == "CONV"
                 and layer.index > 0)
    header = hls.project.path / "firmware" / "weights" / f"{layer.ident}.h"
    text = header.read_text()
    start = text.index("= {\n    ") + len("= {\n    ")
    end = text.index(",", start)
    header.write_text(text[:start] + str(int(text[start:end]) // 2 + 3) + text[end:])
    library, testbench, _ = _rebuild(hls.project.path)
    assert run_testbench(testbench).returncode == 1
    assert library != hls.library  # a new file: dlopen would hand back the loaded one
    broken = HlsRunnable(hls.graph, hls.project, library)
    ref = registry.get("int-reference").compile(qdq, work)
    x = np.random.default_rng(0).standard_normal((2, *qdq.input_shape)).astype(np.float32)
    where = first_divergence(broken, ref, broken.input_codes(x))
    assert where and where.startswith(f"layer {layer.index} "), where


def test_a_csynth_report_fills_the_synthesis_fields(tmp_path):
    from convdeploy.exporters.hls_scripts import CSYNTH, parse_csynth, synthesis_results

    assert synthesis_results(tmp_path)["status"] == "not run"
    report = tmp_path / CSYNTH
    report.parent.mkdir(parents=True)
    report.write_text("""<?xml version="1.0"?><profile>
<UserAssignments><Part>xczu3eg-sbva484-1-e</Part><TargetClockPeriod>5.00</TargetClockPeriod>
</UserAssignments><PerformanceEstimates><SummaryOfTimingAnalysis>
<EstimatedClockPeriod>4.12</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><Worst-caseLatency>123456</Worst-caseLatency>
<Interval-max>120000</Interval-max></SummaryOfOverallLatency></PerformanceEstimates>
<AreaEstimates><Resources><BRAM_18K>200</BRAM_18K><DSP>300</DSP><FF>40000</FF>
<LUT>50000</LUT><URAM>0</URAM></Resources><AvailableResources><BRAM_18K>432</BRAM_18K>
<DSP>360</DSP><FF>141120</FF><LUT>70560</LUT><URAM>0</URAM></AvailableResources>
</AreaEstimates></profile>""")
    got = synthesis_results(tmp_path)
    assert got == parse_csynth(report)
    assert got["status"] == "csynth report" and got["estimated_clock_ns"] == 4.12
    assert got["latency_cycles_worst"] == 123456 and got["resources"]["dsp"] == 300
    assert got["available"]["bram_18k"] == 432
