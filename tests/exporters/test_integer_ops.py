"""Each integer op, on a tiny seeded model: the integer reference equals LiteRT's reference
kernels bit for bit, ONNX Runtime stays within an LSB or two, the float .tflite equals torch."""
import numpy as np
import pytest
import torch
from torch import nn

from convdeploy.exporters.lowering import OpKind
from tests.integer_ops import roundtrip



@pytest.fixture(autouse=True)
def _seeded():
    """Models built in a test get the same weights whatever ran before."""
    torch.manual_seed(0)


def _check(rt, *, ort_lsb: float = 2.0) -> None:
    np.testing.assert_array_equal(rt.litert_ref, rt.int_reference)
    assert rt.lsb(rt.ort) <= ort_lsb
    np.testing.assert_allclose(rt.float_litert, rt.float_torch, rtol=1e-4, atol=1e-4)


class Permutes(nn.Module):
    """ConvNeXt-style channels-last round trip, a reshape across axes, squeeze/unsqueeze."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x)).permute(0, 2, 3, 1)  # N, 4, 4, 8
        y = y.reshape(y.shape[0], 16, 8).transpose(1, 2)  # N, 8, 16
        y = y.unsqueeze(-1).squeeze(-1)
        return self.fc(y.flatten(1))


class AudioStyle(nn.Module):
    """A 1-D signal fed as (N, 1, L, 1) inside forward (the third-party audio ConvNet's form),
    then back to 4-D channels-first through a reshape that is not layout-free."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, (5, 1), padding=(2, 0))
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 8, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x[:, None, :, None]))  # N, 6, 32, 1
        y = y.reshape(y.shape[0], 6, 4, 8)  # layout-sensitive on both sides
        y = torch.relu(self.conv2(y))
        return self.fc(y.permute(0, 3, 1, 2).flatten(1))


@pytest.mark.parametrize("model,shape", [(Permutes, (3, 4, 4)), (AudioStyle, (32,))],
                         ids=["permutes", "audio-unsqueeze"])
def test_shape_only_ops_are_bit_exact(model, shape):
    rt = roundtrip(model(), shape)
    kinds = {op.kind for op in rt.graph.ops}
    assert {OpKind.TRANSPOSE, OpKind.RESHAPE} <= kinds
    _check(rt)


class BatchNormAfterRelu(nn.Module):
    """BatchNorm where no conv precedes it: one before an unpadded conv (folds into it), one
    before a padded conv and one before a mean (each a 1x1 depthwise conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, (9, 1), padding=(4, 0))
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, (4, 1), stride=(2, 1), groups=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 6, (3, 1), padding=(1, 0))
        self.bn3 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)
        for bn in (self.bn1, self.bn2, self.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.3, 0.3)

    def forward(self, x):
        y = self.bn1(torch.relu(self.c1(x[:, None, :, None])))
        y = self.bn2(torch.relu(self.c2(y)))
        y = self.bn3(torch.relu(self.c3(y)))
        return self.fc(y.mean((2, 3)))


def test_batchnorm_without_a_conv_before_it_folds_forward_or_becomes_depthwise():
    from convdeploy.quant import capture, fold_batchnorm

    model = BatchNormAfterRelu().eval()
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    gm = capture(model, x)
    folded = fold_batchnorm(gm)
    assert len(folded) == 3
    assert not any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    convs = [n for n in gm.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert len(convs) == 5  # c1, c2 (bn1 folded in), bn2 and bn3 as depthwise 1x1, c3
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)
    rt = roundtrip(model, (64,))
    assert [op.kind for op in rt.graph.ops].count(OpKind.DEPTHWISE_CONV) == 2
    _check(rt)


class Elementwise(nn.Module):
    """Products of two activations (gating), a difference, a concat of differently scaled
    branches (requantized onto the output's grid), an average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.c = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(20 * 4 * 4, 5)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        y = torch.cat([a * b, a - b, torch.relu(self.c(x))], 1)
        return self.fc(nn.functional.avg_pool2d(y, 2).flatten(1))


def test_mul_sub_concat_average_pool_are_bit_exact():
    rt = roundtrip(Elementwise(), (3, 8, 8))
    kinds = {op.kind for op in rt.graph.ops}
    assert {OpKind.MUL, OpKind.SUB, OpKind.CONCATENATION, OpKind.REQUANTIZE,
            OpKind.AVERAGE_POOL} <= kinds
    # a 2x2 average is a tie on a quarter of the windows: TFLite rounds ties away from zero,
    # ONNX Runtime to even, and the 320-input FC after it adds those LSBs up
    _check(rt, ort_lsb=8.0)


class Gates(nn.Module):
    """Squeeze-excitation with a sigmoid gate, a tanh, GELU (exact and tanh form)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.excite = nn.Conv2d(4, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = nn.functional.gelu(self.conv(x), approximate=self.approximate)
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
        y = torch.tanh(y * gate)
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_lookup_table_activations_are_bit_exact(approximate):
    rt = roundtrip(Gates(approximate), (3, 8, 8))
    kinds = {op.kind for op in rt.graph.ops}
    assert {OpKind.LOGISTIC, OpKind.TANH, OpKind.GELU, OpKind.MUL} <= kinds
    _check(rt)


class HardSwishNet(nn.Module):
    """MobileNetV3's activations: hard-swish, and a hard-sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)
        self.conv.weight.data *= 3  # inputs well beyond [-3, 3]: every branch of the kernel

    def forward(self, x):
        y = nn.functional.hardswish(self.conv(x))
        y = nn.functional.hardswish(self.conv2(y))
        return self.fc(y.mean((2, 3)))


def test_hard_swish_is_bit_exact():
    rt = roundtrip(HardSwishNet(), (3, 8, 8))
    assert OpKind.HARD_SWISH in {op.kind for op in rt.graph.ops}
    _check(rt)


def _single_op_graph(kind, in_q, out_q, shape=(256,), **attrs):
    """QUANTIZE -> one op -> DEQUANTIZE, with the given encodings."""
    from convdeploy.exporters.lowering import Op, OpGraph

    ops = [Op(OpKind.QUANTIZE, ("x",), "q", "quantize"),
           Op(kind, ("q",), "y", kind.value.lower(), attrs=attrs),
           Op(OpKind.DEQUANTIZE, ("y",), "out", "dequantize")]
    return OpGraph(ops, {"q": in_q, "y": out_q}, "x", "out", tuple(shape))


def _litert_and_reference(graph, x, path):
    """(LiteRT reference kernels' output, the integer reference's codes) of ``graph``."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    from convdeploy.exporters.tflite_export import tflite_bytes
    from convdeploy.targets.int_reference import IntegerRunnable
    from convdeploy.targets.mobile_litert import LiteRtRunnable

    path.write_bytes(tflite_bytes(graph))
    lite = next(iter(LiteRtRunnable(path, "BUILTIN_REF", 1)({"x": x}).values()))
    return lite, IntegerRunnable(graph).codes(x)


@pytest.mark.parametrize("kind,attrs", [(OpKind.LOGISTIC, {}), (OpKind.TANH, {}),
                                        (OpKind.GELU, {}), (OpKind.GELU, {"approximate": True}),
                                        (OpKind.HARD_SWISH, {}), (OpKind.REQUANTIZE, {})],
                         ids=["logistic", "tanh", "gelu", "gelu-tanh", "hard-swish",
                              "requantize"])
def test_unary_kernels_equal_litert_on_every_input_code(kind, attrs, tmp_path):
    """Every one of the 256 input codes, under 12 seeded random encodings (int8 and uint8;
    LOGISTIC and TANH with their fixed output encodings)."""
    from convdeploy.exporters.lowering import QParams

    rng = np.random.default_rng(7)
    for trial in range(12):
        signed = bool(trial % 2)
        base = -128 if signed else 0
        in_q = QParams(float(np.float32(rng.uniform(0.002, 0.15))),
                       int(rng.integers(base + 20, base + 236)), 8, signed)
        fixed = {OpKind.LOGISTIC: (1 / 256, base), OpKind.TANH: (1 / 128, base + 128)}
        scale, zp = fixed.get(kind, (float(np.float32(rng.uniform(0.002, 0.1))),
                                     int(rng.integers(base + 10, base + 246))))
        out_q = QParams(scale, zp, 8, signed)
        graph = _single_op_graph(kind, in_q, out_q, **attrs)
        codes = np.arange(base, base + 256)
        x = ((codes - in_q.zero_point) * np.float32(in_q.scale)).astype(np.float32)[None]
        lite, ref = _litert_and_reference(graph, x, tmp_path / f"{kind.value}{trial}.tflite")
        np.testing.assert_array_equal(ref["q"], codes[None])  # every code goes in
        np.testing.assert_array_equal(lite, ref["out"], err_msg=f"trial {trial}: {in_q} -> {out_q}")


@pytest.mark.parametrize("act_signed", [False, True], ids=["uint8", "int8"])
def test_fixed_output_encodings_reach_every_file_unchanged(act_signed):
    """LOGISTIC's output is 1/256 with zero point -128 (int8) / 0 (uint8), TANH's 1/128 with
    0 / 128: in the Encodings (with the reason), the QDQ ONNX and the .tflite."""
    from dataclasses import replace

    import onnx
    from ai_edge_litert.interpreter import Interpreter

    from convdeploy.quant import W8A8
    from convdeploy.quant.encodings import Encodings

    scheme = replace(W8A8, activations=replace(W8A8.activations, signed=act_signed))
    rt = roundtrip(Gates(), (3, 8, 8), scheme=scheme)
    base = -128 if act_signed else 0
    expected = {"LOGISTIC": (1 / 256, base), "TANH": (1 / 128, base + 128)}
    enc = Encodings.load(rt.qdq.encodings)
    fixed = [e for e in enc.tensors.values() if e.constraint]
    assert sorted((e.scale[0], e.zero_point[0]) for e in fixed) == sorted(expected.values())
    model = onnx.load(str(rt.qdq.path))
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {n.output[0]: n for n in model.graph.node}
    tflite = {d["name"]: d for d in Interpreter(model_path=str(rt.tflite.path))
              .get_tensor_details()}
    for op in rt.graph.ops:
        if op.kind.value not in expected:
            continue
        scale, zp = expected[op.kind.value]
        q = producers[op.output]
        assert q.op_type == "QuantizeLinear"
        assert float(consts[q.input[1]]) == scale and int(consts[q.input[2]]) == zp
        assert tflite[op.output]["quantization"] == (scale, zp - (0 if act_signed else 128))


class ChannelsLastMlp(nn.Module):
    """ConvNeXt's block without its LayerNorm: 7x7 depthwise, permute to channels-last, two
    linear layers (exported as MatMul + Add) with GELU, a layer scale, permute back, residual."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 2, stride=2)
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.fc = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(nn.functional.gelu(self.pw1(y))) * self.gamma
        return self.fc((x + y.permute(0, 3, 1, 2)).mean((2, 3)))


def _tflite_ops(rt) -> list[tuple[str, object]]:
    """(builtin name, options) of each operator in the round trip's .tflite, in order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(rt.tflite.path.read_bytes(), 0)
    names = {c: n for n, c in vars(schema.BuiltinOperator).items() if isinstance(c, int)}
    return [(names[model.operatorCodes[o.opcodeIndex].builtinCode], o.builtinOptions)
            for o in model.subgraphs[0].operators]


def test_channels_last_linear_layers_need_no_transpose_in_tflite():
    rt = roundtrip(ChannelsLastMlp(), (3, 16, 16))
    kinds = [op.kind for op in rt.graph.ops]
    assert kinds.count(OpKind.FULLY_CONNECTED) == 3 and OpKind.MUL not in kinds  # scale folded
    _check(rt)
    ops = [name for name, _ in _tflite_ops(rt)]
    assert "TRANSPOSE" not in ops, ops  # both permutes became layout choices


class Decimations(nn.Module):
    """P3D-B's ``y[..., ::s, ::s]`` (a temporal branch on the strided grid): on a 5-D clip
    activation and on a 4-D map, odd sizes, a step on one axis and steps of 2 and 3."""

    def __init__(self, video: bool) -> None:
        super().__init__()
        conv = nn.Conv3d if video else nn.Conv2d
        k, p = ((1, 3, 3), (0, 1, 1)) if video else (3, 1)
        self.video = video
        self.conv = conv(3, 8, k, padding=p)
        self.fc = nn.Linear(8 * 3, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        dims = (2, 3, 4) if self.video else (2, 3)
        parts = [y[..., ::2, ::2], y[..., ::3, :], y[..., :, ::3]]
        return self.fc(torch.cat([q.mean(dims) for q in parts], 1))


@pytest.mark.parametrize("video,shape", [(True, (3, 2, 7, 6)), (False, (3, 9, 7))],
                         ids=["5-d", "4-d"])
def test_spatial_decimation_is_a_delegable_depthwise_conv_bit_exact(video, shape):
    """XNNPACK delegates no STRIDED_SLICE with a step (the graph splits in two partitions), so
    the writer emits a 1x1 DEPTHWISE_CONV_2D of that stride with unit weights: exact."""
    rt = roundtrip(Decimations(video), shape)
    slices = [op for op in rt.graph.ops if op.kind is OpKind.STRIDED_SLICE]
    stepped = [op for op in slices if max(op.attrs["steps"]) > 1]
    assert sorted(tuple(op.attrs["steps"]) for op in stepped) == [(2,), (2,), (3,), (3,)]
    _check(rt)
    ops = _tflite_ops(rt)
    # what is left: the (2+1)D rewrite's step-1 frame-row slices (5-D only)
    assert [name for name, _ in ops].count("STRIDED_SLICE") == len(slices) - len(stepped)
    strides = sorted((o.strideH, o.strideW) for name, o in ops if name == "DEPTHWISE_CONV_2D")
    assert strides == [(1, 2), (1, 3), (2, 1), (3, 1)]
    from convdeploy.targets import registry

    xnnpack = registry.get("mobile-litert").compile(rt.tflite, rt.tflite.path.parent)
    if "xnnpack_partitions" not in xnnpack.details:
        pytest.skip("this LiteRT does not list its execution plan")
    assert xnnpack.details["xnnpack_partitions"] == 1, xnnpack.details


class ConvNeXtBlockNet(ChannelsLastMlp):
    """ConvNeXt's block whole: the LayerNorm over channels (channels-last) is a float island
    on integer targets."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__(dim)
        self.norm = nn.LayerNorm(dim)
        self.norm.weight.data.uniform_(0.5, 1.5)
        self.norm.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x):
        x = self.stem(x)
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.pw2(nn.functional.gelu(self.pw1(y))) * self.gamma
        return self.fc((x + y.permute(0, 3, 1, 2)).mean((2, 3)))


def test_layer_norm_runs_as_a_float_island_bit_exact():
    rt = roundtrip(ConvNeXtBlockNet(), (3, 16, 16))
    islands = [op for op in rt.graph.ops if op.kind is OpKind.FLOAT_ISLAND]
    assert [op.attrs["onnx"] for op in islands] == ["LayerNormalization"]
    assert rt.graph.float_islands() == [f"{islands[0].name} (LayerNormalization)"]
    assert rt.tflite.details["float_islands"] == rt.graph.float_islands()  # in the report
    _check(rt)


@pytest.mark.parametrize("channels", [7, 96, 384])
def test_layer_norm_island_equals_litert_over_wide_rows(channels, tmp_path):
    """The float island's reductions are summed in LiteRT's order: bit-exact on 512 rows
    of up to 384 channels (a different summation order flips output codes here)."""
    from convdeploy.exporters.lowering import QParams

    rng = np.random.default_rng(channels)
    graph = _single_op_graph(OpKind.FLOAT_ISLAND, QParams(0.05, 7, 8, False),
                             QParams(0.03, 3, 8, True), (channels,), onnx="LayerNormalization",
                             axis=1, epsilon=1e-6,
                             scale=rng.uniform(0.5, 1.5, channels).astype(np.float32),
                             bias=rng.uniform(-0.2, 0.2, channels).astype(np.float32))
    x = (rng.standard_normal((512, channels)) * 3 + 1).astype(np.float32)
    lite, ref = _litert_and_reference(graph, x, tmp_path / "ln.tflite")
    np.testing.assert_array_equal(lite, ref["out"])


class Constants(nn.Module):
    """Constants in elementwise ops: MobileNetV3's hard-sigmoid as written in many codebases
    (``relu6(x + 3) / 6``), a per-channel constant product, a constant minus an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.conv(x)
        gate = nn.functional.relu6(y + 3.0) / 6.0
        y = (y * gate) * self.scale
        return self.fc((1.5 - y).mean((2, 3)))


def test_add_mul_sub_of_a_constant_are_bit_exact():
    rt = roundtrip(Constants(), (3, 8, 8))
    const_ops = [op for op in rt.graph.ops if op.weight is not None and
                 op.kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL)]
    assert len(const_ops) == 4 and any(op.attrs["constant_first"] for op in const_ops)
    _check(rt)


class SplitsAndSlopes(nn.Module):
    """A channel split (InceptionNeXt's), LeakyReLU, PReLU, SiLU and hard-sigmoid (each
    decomposed as TFLite runs it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.prelu = nn.PReLU(4)
        self.prelu.weight.data.uniform_(0.05, 0.4)
        self.fc = nn.Linear(13 * 16, 3)

    def forward(self, x):
        a, b = torch.split(self.conv(x), [1, 3], dim=1)
        y = torch.cat([nn.functional.leaky_relu(a, 0.1), self.prelu(torch.cat([a, b], 1)),
                       nn.functional.hardsigmoid(b), nn.functional.silu(b), b * 2], 1)
        return self.fc(y[:, 1:].flatten(1))


def test_split_leaky_relu_prelu_silu_hardsigmoid_are_bit_exact():
    rt = roundtrip(SplitsAndSlopes(), (3, 4, 4))
    kinds = [op.kind for op in rt.graph.ops]
    assert {OpKind.LEAKY_RELU, OpKind.PRELU, OpKind.LOGISTIC, OpKind.STRIDED_SLICE} <= set(kinds)
    _check(rt)


class WholeMapPool(nn.Module):
    """EfficientNet-style code at 32x32: an average pool whose kernel exceeds the 4x4 map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.pool = nn.AvgPool2d(7, ceil_mode=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_a_pool_over_the_whole_map_becomes_a_mean_that_openvino_reads():
    from convdeploy.targets import registry

    rt = roundtrip(WholeMapPool(), (3, 32, 32), samples=16)
    kinds = {op.kind for op in rt.graph.ops}
    assert OpKind.MEAN in kinds and OpKind.AVERAGE_POOL not in kinds
    _check(rt)
    if registry.get("cpu-openvino").unavailable() is None:
        assert registry.get("cpu-openvino").check(rt.qdq) == []


class BatchNormAfterAdd(nn.Module):
    """A residual-style sum of two convolutions followed by BatchNorm: it folds into both."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2.0)
        self.bn.weight.data.uniform_(0.5, 1.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.a(x) + self.b(x))).mean((2, 3)))


def test_batchnorm_after_an_add_of_two_convolutions_folds_into_both():
    from convdeploy.quant import capture, fold_batchnorm

    model = BatchNormAfterAdd().eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    gm = capture(model, x)
    assert len(fold_batchnorm(gm)) == 1
    assert not any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    assert sum(n.target is torch.ops.aten.conv2d.default for n in gm.graph.nodes) == 2
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)
    rt = roundtrip(model, (3, 8, 8))
    assert OpKind.DEPTHWISE_CONV not in {op.kind for op in rt.graph.ops}
    _check(rt)


@pytest.mark.parametrize("depth", [3, 10, 64, 200])
def test_softmax_equals_litert_on_random_rows(depth, tmp_path):
    """gemmlowp's fixed-point exp and reciprocal as TFLite's int8 SOFTMAX: 300 rows under 3
    seeded input encodings (int8 and uint8), output on the fixed 1/256 grid."""
    from convdeploy.exporters.lowering import QParams

    rng = np.random.default_rng(depth)
    for trial in range(3):
        signed = bool(trial % 2)
        base = -128 if signed else 0
        in_q = QParams(float(np.float32(rng.uniform(0.01, 0.3))),
                       int(rng.integers(base + 20, base + 236)), 8, signed)
        graph = _single_op_graph(OpKind.SOFTMAX, in_q, QParams(1 / 256, base, 8, signed),
                                 (depth,))
        x = (rng.standard_normal((300, depth)) * 40 * in_q.scale).astype(np.float32)
        lite, ref = _litert_and_reference(graph, x, tmp_path / f"softmax{trial}.tflite")
        np.testing.assert_array_equal(lite, ref["out"])


class ChannelAttention(nn.Module):
    """A softmax over channels (channels-last), used as attention weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(x)
        weights = torch.softmax(y.permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)
        return self.fc((y * weights).mean((2, 3)))


def test_softmax_in_a_model_has_its_fixed_encoding_and_is_bit_exact():
    from convdeploy.quant.encodings import Encodings

    rt = roundtrip(ChannelAttention(), (3, 8, 8))
    assert OpKind.SOFTMAX in {op.kind for op in rt.graph.ops}
    enc = Encodings.load(rt.qdq.encodings)
    assert [(e.scale[0], e.zero_point[0]) for e in enc.tensors.values()
            if e.constraint.startswith("SOFTMAX")] == [(1 / 256, 0)]
    _check(rt)
