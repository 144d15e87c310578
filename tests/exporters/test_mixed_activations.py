"""Per-layer activation widths (``LAYER=8a16``): a 16-bit layer inside an 8-bit model. Each
op's inputs are requantized to its own width, so every QDQ op group has one activation type
(what onnxruntime's QDQ selectors, and so the HTP's EP, need); the width changes lower to
REQUANTIZE; the integer consumers agree (fpga-hls: tests/targets/test_fpga_hls.py)."""
import functools

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from convdeploy.quant.scheme import W8A8, LayerOverride
from tests.conftest import scratch_dir, seeded_tiny_net

LAYER = "dw.0"  # seeded_tiny_net: stem.0 -> dw.0 (ReLU6) -> down.0 -> fc


def test_parse_and_value_round_trip():
    o = LayerOverride.parse("layer1.0.conv1=8a16")
    assert (o.layer, o.weights.bits, o.activation_bits, o.value) == ("layer1.0.conv1", 8, 16,
                                                                     "8a16")
    assert LayerOverride.parse("fc=4").activation_bits is None
    assert LayerOverride.parse("fc=float").value == "float"
    for bad in ("fc=8a12", "fc=floata16", "fc=a16", "fc=16"):
        with pytest.raises(ValueError, match="LAYER=8a16"):
            LayerOverride.parse(bad)


def test_scheme_widths_and_the_layer_grid():
    scheme = W8A8.with_(overrides=(LayerOverride.parse(f"{LAYER}=8a16"),))
    assert scheme.activation_widths == {8, 16} and scheme.min_bits == 8
    assert scheme.activations_for(LAYER).bits == 16
    assert scheme.activations_for("stem.0") is scheme.activations
    assert scheme.activations_for(LAYER).signed == scheme.activations.signed
    assert scheme.to_dict()["overrides"] == {LAYER: "8a16"}
    assert W8A8.with_(overrides=(LayerOverride.parse("fc=4"),)).to_dict()["overrides"] == \
        {"fc": 4}


@functools.lru_cache(maxsize=None)
def _exported():
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import capture, quantize

    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 3, 16, 16, generator=gen) for _ in range(4)]
    scheme = W8A8.with_(overrides=(LayerOverride.parse(f"{LAYER}=8a16"),))
    qm = quantize(capture(seeded_tiny_net(), batches[0][:2]), scheme, batches, progress=False)
    work = scratch_dir("convdeploy-mixed-")
    return qm, OnnxExporter(quantized=True, example=batches[0][:2]).export(qm, work), batches


def test_the_layer_and_its_neighbours_are_requantized():
    qm, _, _ = _exported()
    bits = {k: e.bits for k, e in qm.encodings.tensors.items()}
    sixteen = {k for k, b in bits.items() if b == 16}
    # dw.0's input (relu, converted) and output (its ReLU6) are 16-bit; down.0 (and the
    # shortcut's ADD) read 8-bit copies of it; nothing else is wide
    assert sixteen == {"relu.a16", "hardtanh"}, sixteen
    assert bits["hardtanh.a8"] == 8


def test_every_conv_group_has_one_activation_type():
    _, art, _ = _exported()
    model = onnx.load(str(art.path))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    users = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def zp_type(node):
        return inits[node.input[2]].data_type

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    seen = set()
    for conv in convs:
        dq_in = producer[conv.input[0]]
        out = conv.output[0]
        while users[out][0].op_type in ("Relu", "Clip"):
            out = users[out][0].output[0]
        q_out = users[out][0]
        assert dq_in.op_type == "DequantizeLinear" and q_out.op_type == "QuantizeLinear"
        assert zp_type(dq_in) == zp_type(q_out), conv.name
        seen.add(zp_type(q_out))
    assert seen == {TensorProto.UINT8, TensorProto.UINT16}


def test_int_reference_requantizes_and_runtimes_agree(tmp_path):
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.opgraph import OpKind
    from convdeploy.targets import registry

    qm, art, batches = _exported()
    graph = lower_file(art.path)
    # into dw.0 (8 -> 16), and its output back to 8 bits for down.0 and for the shortcut's ADD
    assert sum(op.kind is OpKind.REQUANTIZE for op in graph.ops) == 3
    x = batches[1].numpy()
    ref = registry.get("int-reference").compile(art, tmp_path / "ref")({"input": x})["output"]
    sim = qm.simulate(batches[1]).numpy()
    lsb = qm.output_scale()
    assert np.abs(ref - sim).max() / lsb <= 2 + 1e-3
    pytest.importorskip("onnxruntime")
    ort = registry.get("cpu-ort").compile(art, tmp_path / "ort")({"input": x})["output"]
    assert np.abs(ort - sim).max() / lsb <= 1 + 1e-3
    assert np.abs(ort - ref).max() / lsb <= 2 + 1e-3


def test_the_htp_runs_it_within_lsbs_of_the_integer_reference(tmp_path):
    pytest.importorskip("onnxruntime_qnn")
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions

    target = registry.get("dsp-qnn-htp")
    if target.unavailable():
        pytest.skip(target.unavailable())
    _, art, batches = _exported()
    assert target.check_scheme(art.scheme) == [] and target.check(art) == []
    x = batches[1].numpy()
    got = target.compile(art, tmp_path / "htp", options=RuntimeOptions(1))({"input": x})
    ref = registry.get("int-reference").compile(art, tmp_path / "ref")({"input": x})
    qm, _, _ = _exported()
    assert np.abs(got["output"] - ref["output"]).max() / qm.output_scale() <= 3 + 1e-3


def test_8_bit_only_targets_refuse_it_by_name():
    from convdeploy.targets import registry

    scheme = W8A8.with_(overrides=(LayerOverride.parse(f"{LAYER}=8a16"),))
    reasons = registry.get("mobile-litert").check_scheme(scheme)
    assert reasons == ["mobile-litert has no 16-bit activations (it runs 8-bit)"]
