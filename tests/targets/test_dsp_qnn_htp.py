"""The Qualcomm HTP (emulated by onnxruntime-qnn on x86) on the tiny QDQ model."""
from dataclasses import replace

import pytest

from convdeploy.quant.scheme import INT8_ACT, W8A8, W4A8
from tests.artifacts import tiny_artifacts
from tests.targets.conformance import TargetConformance


class TestQnnHtp(TargetConformance):
    target_name = "dsp-qnn-htp"
    max_lsb = 3.0
    min_exact_fraction = 0.5

    def test_scheme_constraints(self, target):
        assert target.check_scheme(W8A8) == []
        assert any("4-bit weights" in r for r in target.check_scheme(W4A8))
        signed = W8A8.with_(activations=INT8_ACT)
        assert any("unsigned" in r for r in target.check_scheme(signed))

    def test_whole_model_on_the_htp(self, target, tmp_path):
        from convdeploy.targets.base import RuntimeOptions

        _, qdq = tiny_artifacts()
        runnable = target.compile(qdq, tmp_path, options=RuntimeOptions(1))
        assert runnable.details["cpu_fallback"] == "disabled"
        assert runnable.session.get_providers()[0] == "QNNExecutionProvider"

    def test_check_names_an_op_it_cannot_run(self, target, tmp_path):
        """A float op in a quantized graph: with CPU fallback off, check() says what fails."""
        import onnx
        from onnx import helper

        _, qdq = tiny_artifacts()
        model = onnx.load(str(qdq.path))
        out = model.graph.output[0].name
        model.graph.node.append(helper.make_node("Erf", [out], ["erf_out"]))
        model.graph.output[0].name = "erf_out"
        path = tmp_path / "erf.onnx"
        onnx.save(model, str(path))
        reasons = target.check(replace(qdq, path=path, output_name="erf_out"))
        assert reasons and any("Erf" in r for r in reasons), reasons
