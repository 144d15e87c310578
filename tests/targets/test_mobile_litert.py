"""LiteRT targets on the tiny model's ``.tflite`` files; the reference kernels must equal the
integer reference bit for bit, and the file must carry the Encodings' numbers."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.artifacts import tiny_artifacts, tiny_quantized, tiny_tflite_artifacts
from tests.targets.conformance import TargetConformance

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed "
                                             "(pip install 'convdeploy[mobile]')")


class TestLiteRt(TargetConformance):
    target_name = "mobile-litert"
    float_atol = 1e-5
    max_lsb = 2.0
    min_exact_fraction = 0.6

    def artifacts(self):
        return tiny_tflite_artifacts()

    def test_check_names_an_op_it_cannot_run(self, target, tmp_path):
        """The exporter refuses an op with no TFLite form before any target sees a file."""
        import onnx
        from onnx import helper

        from convdeploy.errors import ConvdeployError
        from convdeploy.exporters.tflite_export import TfliteExporter

        flt, _ = tiny_artifacts()
        model = onnx.load(str(flt.path))
        node = model.graph.node[-1]
        model.graph.node.append(helper.make_node("Sin", list(node.output), ["sin_out"]))
        model.graph.output[0].name = "sin_out"
        path = tmp_path / "sin.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ConvdeployError, match="Sin"):
            TfliteExporter().export(replace(flt, path=path), tmp_path)


class TestLiteRtReference(TestLiteRt):
    target_name = "mobile-litert-ref"
    max_lsb = 2.0

    def test_bit_exact_to_the_integer_reference(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions

        _, qdq = tiny_artifacts()
        _, tfl = tiny_tflite_artifacts()
        x = torch.randn(256, 3, 16, 16, generator=torch.Generator().manual_seed(3)).numpy()
        ref = self._int_reference(qdq, tmp_path)({"input": x})["output"]
        lite = target.compile(tfl, tmp_path, options=RuntimeOptions(1))({"input": x})["output"]
        np.testing.assert_array_equal(lite, ref)

    @staticmethod
    def _int_reference(qdq, tmp_path):
        from convdeploy.targets import registry

        return registry.get("int-reference").compile(qdq, tmp_path)


def test_tflite_carries_the_encodings_numbers():
    """Scales and zero points read back from the flatbuffer are the Encodings' (uint8
    activations stored as int8 with zero_point - 128: the same real numbers)."""
    from ai_edge_litert.interpreter import Interpreter

    from convdeploy.quant.encodings import TensorKind

    _, qm, _ = tiny_quantized()
    _, tfl = tiny_tflite_artifacts()
    details = {d["name"]: d for d in Interpreter(model_path=str(tfl.path)).get_tensor_details()}
    weights = [e for e in qm.encodings.tensors.values() if e.kind is TensorKind.WEIGHT]
    assert weights
    found = 0
    for d in details.values():
        qp = d["quantization_parameters"]
        if d["name"].endswith(".weight") and len(qp["scales"]) > 1:
            match = [e for e in weights if len(e.scale) == len(qp["scales"]) and
                     np.array_equal(np.float32(e.scale), qp["scales"])]
            assert match, d["name"]
            assert not qp["zero_points"].any()
            found += 1
    assert found >= 3
    acts = [e for e in qm.encodings.tensors.values() if e.kind is TensorKind.ACTIVATION]
    written = {(float(d["quantization"][0]), int(d["quantization"][1])) for d in details.values()
               if d["dtype"] == np.int8 and d["quantization"][0] > 0}
    for e in acts:
        zp = e.zero_point[0] - (0 if e.signed else 128)
        assert (float(np.float32(e.scale[0])), zp) in written, e


def test_int8_file_is_smaller_and_its_weights_are_int8():
    from ai_edge_litert.interpreter import Interpreter

    flt, tfl = tiny_tflite_artifacts()
    assert tfl.size_bytes < flt.size_bytes
    kinds = {d["dtype"] for d in Interpreter(model_path=str(tfl.path)).get_tensor_details()
             if d["name"].endswith(".weight")}
    assert kinds == {np.int8}


def test_missing_runtime_is_reported_by_check(monkeypatch):
    from convdeploy.targets.mobile_litert import LiteRtTarget

    monkeypatch.setattr(LiteRtTarget, "runtime_module", "ai_edge_litert_not_here")
    _, tfl = tiny_tflite_artifacts()
    reasons = LiteRtTarget().check(tfl)
    assert reasons and "not installed" in reasons[0] and "convdeploy[mobile]" in reasons[0]
