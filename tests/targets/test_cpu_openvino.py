import numpy as np
import pytest
import torch

from tests.targets.conformance import TargetConformance


class TestOpenVinoCpu(TargetConformance):
    target_name = "cpu-openvino"
    # OpenVINO folds scales and requantizes in its own order: measured here, 64% of outputs
    # equal the simulation and all are within 1 LSB on the tiny model (5-7 LSB max on ResNet-20).
    max_lsb = 2.0
    min_exact_fraction = 0.5

    def test_float_runs_in_f32_not_bf16(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions
        from tests.artifacts import tiny_artifacts

        flt, _ = tiny_artifacts()
        runnable = target.compile(flt, tmp_path, options=RuntimeOptions(threads=1))
        assert runnable.details["inference_precision_hint"] == "f32"
        assert set(runnable.details["weighted_layer_precisions"]) <= {"f32", "FP32"}

    def test_int8_convolutions_are_used(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions
        from tests.artifacts import tiny_artifacts

        _, qdq = tiny_artifacts()
        runnable = target.compile(qdq, tmp_path, options=RuntimeOptions(threads=1))
        precisions = runnable.details["weighted_layer_precisions"]
        assert any(p.lower() in ("u8", "i8") for p in precisions), precisions


class PaddedFrames(torch.nn.Module):
    """The smallest file OpenVINO 2026.4 cannot read as written: a Pad of a tensor whose zero
    point is not 0 (the raw input), then a Reshape (a video model's (2+1)D form)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(224, 3)

    def forward(self, x):  # (N, 3, 2, 6, 6): frames padded, stacked, one 2-D convolution
        y = torch.nn.functional.pad(x, (0, 0, 1, 1)).reshape(x.shape[0], 3, 16, 6)
        return self.fc(torch.relu(self.conv(y)).flatten(1))


def test_pads_of_codes_with_a_zero_point_are_read_as_integer_pads(tmp_path):
    """The legalization (exporters/codes_rewrite.on_codes) is exact: onnxruntime gives the same
    outputs for the file as written and as OpenVINO reads it; OpenVINO then runs it within
    LSBs of onnxruntime."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    import onnx
    import onnxruntime as ort

    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import W8A8, capture, quantize
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions
    from convdeploy.exporters.codes_rewrite import on_codes

    torch.manual_seed(0)
    xs = [torch.randn(4, 3, 2, 6, 6, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    qm = quantize(capture(PaddedFrames().eval(), xs[0][:2]), W8A8, xs, progress=False)
    art = OnnxExporter(quantized=True, example=xs[0][:2]).export(qm, tmp_path)
    model = onnx.load(str(art.path))
    assert on_codes(model) == 1
    onnx.save(model, str(tmp_path / "legal.onnx"))
    x = xs[1].numpy()
    basic = ort.SessionOptions()  # the files as written: no runtime rewrite of our own
    basic.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    outs = [ort.InferenceSession(str(p), basic, providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0] for p in (art.path, tmp_path / "legal.onnx")]
    np.testing.assert_array_equal(outs[0], outs[1])
    runnable = registry.get("cpu-openvino").compile(art, tmp_path, options=RuntimeOptions(1))
    assert runnable.details["graph_rewrites"] == {"on_codes": 1}
    assert np.abs(runnable({"input": x})["output"] - outs[0]).max() / art.output_scale <= 2.0
