"""The (2+1)D rewrite: 5-D convolutions and means lowered as 2-D ops, exact in float and, after
quantization, equal code for code to a direct 5-D integer convolution; LiteRT's reference
kernels and the HLS C-simulation then equal the integer reference on a P3D-style net."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import scratch_dir

GEOMETRIES = {  # (kernel, stride, padding, dilation) of one Conv3d, input (3, 4, 13, 11)
    "spatial-3x3": ((1, 3, 3), (1, 1, 1), (0, 1, 1), 1),
    "spatial-3x3-stride2": ((1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
    "spatial-5x3-dilated": ((1, 5, 3), (1, 1, 2), (0, 2, 0), (1, 2, 1)),
    "temporal-3": ((3, 1, 1), 1, (1, 0, 0), 1),
    "temporal-2-stride2": ((2, 1, 1), (2, 1, 1), 0, 1),
    "pointwise-stride2": ((1, 1, 1), (1, 2, 2), 0, 1),
    "full-3x3x3": ((3, 3, 3), 1, 1, 1),
    "full-3x3x3-strided-dilated": ((3, 3, 3), (2, 2, 1), (2, 1, 1), (2, 1, 1)),
}


class OneConv3d(nn.Module):
    def __init__(self, kernel, stride, padding, dilation) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, kernel, stride, padding, dilation)

    def forward(self, x):
        return torch.relu(self.conv(x))


def _export(model: nn.Module, shape, quantized: bool = True):
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import W8A8, capture, quantize

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, *shape, generator=gen) for _ in range(2)]
    work = scratch_dir("convdeploy-3d-")
    qm = quantize(capture(model.eval(), batches[0][:2]), W8A8, batches, progress=False)
    art = OnnxExporter(quantized=quantized, example=batches[0][:2]).export(qm, work)
    return art, (qm if quantized else model), batches


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_rewritten_conv3d_equals_a_direct_5d_integer_convolution(name):
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.opgraph import OpKind
    from convdeploy.quant import integer_kernels as k
    from convdeploy.quant.fixed_point import activation_range
    from convdeploy.targets.int_reference import IntegerRunnable

    torch.manual_seed(1)
    model = OneConv3d(*GEOMETRIES[name])
    qdq, _, batches = _export(model, (3, 4, 13, 11))
    graph = lower_file(qdq.path)
    assert all(len(op.weight.shape) == 4 for op in graph.ops if op.kind is OpKind.CONV)
    conv = next(op for op in graph.ops if op.kind is OpKind.CONV)
    c = model.conv
    codes = conv.weight.reshape(6, -1, *c.kernel_size[1:])
    if c.kernel_size[0] > 1 and max(c.kernel_size[1:]) > 1:  # the taps' weight order undone
        codes = codes.reshape(6, c.kernel_size[0], 3, *c.kernel_size[1:]).transpose(0, 2, 1, 3,
                                                                                     4)
    values = IntegerRunnable(graph).codes(batches[1].numpy())
    x_name, y_name = graph.ops[0].output, graph.ops[-1].inputs[0]
    q_in, q_out = graph.quant[x_name], graph.quant[y_name]
    # the 5-D convolution done directly: exact float64 sums of integer products
    w5 = torch.from_numpy(np.ascontiguousarray(codes).reshape(c.weight.shape).astype(np.float64))
    xs = torch.from_numpy(values[x_name].astype(np.float64) - q_in.zero_point)
    acc = torch.nn.functional.conv3d(xs, w5, stride=c.stride, padding=c.padding,
                                     dilation=c.dilation).numpy().astype(np.int64)
    acc += conv.bias.astype(np.int64).reshape(1, -1, 1, 1, 1)
    low, high = activation_range("RELU", q_out.zero_point, q_out.scale, q_out.qmin, q_out.qmax)
    want = k.requantize(acc, q_in.scale, conv.weight_scale, q_out.scale, q_out.zero_point,
                        low, high)
    np.testing.assert_array_equal(values[y_name], want)


class P3DTiny(nn.Module):
    """P3D's three block forms and a mean over (T, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        from convdeploy.models.video_nets import P3D

        self.net = P3D(5, widths=(8, 12, 16))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("name", ["p3d", "full-3x3x3"])
def test_litert_reference_and_hls_equal_the_integer_reference(name):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from convdeploy.exporters.tflite_export import TfliteExporter
    from convdeploy.targets import registry

    model = P3DTiny() if name == "p3d" else OneConv3d(*GEOMETRIES["full-3x3x3-strided-dilated"])
    qdq, _, batches = _export(model, (3, 4, 12, 12))
    x = {"input": batches[1].numpy()}
    work = qdq.path.parent
    runnable = registry.get("int-reference").compile(qdq, work)
    form = "Conv3d (1,k,k)" if name == "p3d" else "temporal taps"
    assert any(form in r for r in runnable.details["rewritten_2d"])
    ref = runnable(x)["output"]
    tfl = TfliteExporter().export(qdq, work)
    np.testing.assert_array_equal(registry.get("mobile-litert-ref").compile(tfl, work)(x)[
        "output"], ref)
    ort = registry.get("cpu-ort").compile(qdq, work)(x)["output"]  # the 5-D QDQ, in float
    assert np.abs(ort - ref).max() / qdq.output_scale <= 2.0 + 1e-3
    if shutil.which("g++"):
        np.testing.assert_array_equal(registry.get("fpga-hls").compile(qdq, work)(x)["output"],
                                      ref)


def test_the_rewrite_is_exact_in_float():
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from convdeploy.exporters.tflite_export import TfliteExporter
    from convdeploy.targets import registry

    flt, model, batches = _export(P3DTiny(), (3, 4, 12, 12), quantized=False)
    tfl = TfliteExporter().export(flt, flt.path.parent)
    got = registry.get("mobile-litert-ref").compile(tfl, flt.path.parent)(
        {"input": batches[1].numpy()})["output"]
    np.testing.assert_allclose(got, model(batches[1]).detach().numpy(), atol=2e-5, rtol=1e-5)


class Grouped3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1, groups=3)

    def forward(self, x):
        return self.conv(x)


def test_a_grouped_full_3d_kernel_is_refused_by_name():
    from convdeploy.targets import registry

    qdq, _, _ = _export(Grouped3d(), (3, 4, 8, 8))
    reasons = registry.get("int-reference").check(qdq)
    assert reasons and "grouped 3x3x3 Conv3d" in reasons[0] and "factor it" in reasons[0], \
        reasons
    assert registry.get("cpu-ort").check(qdq) == []  # the 5-D QDQ itself runs there


def _two_forms(model: nn.Module, shape):
    """The captured 5-D graph and its 2-D torch form (``quant/conv3d_form.py``)."""
    from convdeploy.quant import capture
    from convdeploy.quant.conv3d_form import conv3d_as_2d

    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(2))
    gm = capture(model.eval(), x[:2])
    two_d, names, _ = conv3d_as_2d(capture(model.eval(), x[:2]), x[:2])
    return gm, two_d, names, x


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_the_torch_form_is_exact_in_float_and_holds_no_5d_op(name):
    torch.manual_seed(3)
    conv = OneConv3d(*GEOMETRIES[name]).conv
    model = nn.Sequential(conv, nn.BatchNorm3d(6).eval(), nn.ReLU())
    model[1].running_mean.uniform_(-1, 1)  # a BN to fold before the rewrite
    gm, two_d, names, x = _two_forms(model, (3, 4, 13, 11))
    assert len(names) == 1
    targets = {n.target for n in two_d.graph.nodes if n.op == "call_function"}
    assert torch.ops.aten.conv3d.default not in targets
    assert not any("batch_norm" in str(t) for t in targets)  # folded into the 2-D conv
    with torch.no_grad():
        torch.testing.assert_close(two_d(x), gm(x), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(two_d(x[:1]), gm(x[:1]), atol=2e-5, rtol=1e-5)  # any batch


def test_the_torch_form_lowers_to_the_ops_the_lowering_writes_for_the_5d_graph():
    """``--conv3d-as-2d`` hands the ONNX runtimes the form LiteRT runs: lowered, its op list is
    the 5-D graph's lowering, op for op (two reshapes in a row may be one), and the integer
    outputs agree."""
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import W8A8, quantize
    from convdeploy.targets import registry

    torch.manual_seed(4)
    gm, two_d, names, x = _two_forms(P3DTiny(), (3, 4, 12, 12))
    assert len(names) == sum(isinstance(m, nn.Conv3d) for m in P3DTiny().modules())
    batches = [torch.randn(4, 3, 4, 12, 12, generator=torch.Generator().manual_seed(s))
               for s in (0, 1)]
    arts = []
    for graph in (gm, two_d):
        work = scratch_dir("convdeploy-3d-")
        qm = quantize(graph, W8A8, batches, progress=False)
        arts.append(OnnxExporter(quantized=True, example=batches[0][:2]).export(qm, work))
    from convdeploy.exporters.opgraph import OpKind

    kinds = [[op.kind for op in lower_file(a.path).ops] for a in arts]
    assert [k for k in kinds[0] if k is not OpKind.RESHAPE] == \
        [k for k in kinds[1] if k is not OpKind.RESHAPE]
    assert kinds[1].count(OpKind.RESHAPE) <= kinds[0].count(OpKind.RESHAPE)
    outs = [registry.get("int-reference").compile(a, a.path.parent)(
        {"input": batches[1].numpy()})["output"] for a in arts]
    # Calibration saw the same values up to float rounding: the encodings may differ by ulps.
    assert np.abs(outs[0] - outs[1]).max() / arts[0].output_scale <= 1.0 + 1e-3


def test_a_grouped_full_3d_kernel_has_no_torch_form_either():
    from convdeploy.errors import ConvdeployError

    with pytest.raises(ConvdeployError, match="grouped 3x3x3 kernel has no exact 2-D form"):
        _two_forms(Grouped3d(), (3, 4, 8, 8))


@pytest.mark.parametrize("target", ["int-reference", "fpga-hls"])
def test_targets_that_lower_the_graph_refuse_the_layer_before_calibration(target):
    """The check that ``quantize_and_export`` runs on the float export, before calibration."""
    from convdeploy.config import DeployConfig
    from convdeploy.errors import ConvdeployError
    from convdeploy.pipeline import _check_integer_ops, resolve_targets

    flt, _, _ = _export(Grouped3d(), (3, 4, 8, 8), quantized=False)
    with pytest.raises(ConvdeployError, match=f"{target} cannot run .*grouped 3x3x3 Conv3d"):
        _check_integer_ops(resolve_targets((target,)), DeployConfig(targets=(target,)), flt)
    _check_integer_ops(resolve_targets(("cpu-ort",)), DeployConfig(targets=("cpu-ort",)), flt)
