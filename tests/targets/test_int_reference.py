import numpy as np
import torch

from tests.artifacts import tiny_artifacts, tiny_quantized
from tests.targets.conformance import TargetConformance


class TestIntReference(TargetConformance):
    target_name = "int-reference"
    max_lsb = 2.0
    min_exact_fraction = 0.6

    def test_every_tensor_is_an_integer_in_its_range(self, target, tmp_path):
        from convdeploy.exporters.lowering import lower_file
        from convdeploy.targets.int_reference import IntegerRunnable

        _, qdq = tiny_artifacts()
        graph = lower_file(qdq.path)
        _, _, batches = tiny_quantized()
        codes = IntegerRunnable(graph).codes(batches[0].numpy())
        for name, q in graph.quant.items():
            assert codes[name].dtype == np.int64
            assert q.qmin <= codes[name].min() and codes[name].max() <= q.qmax, name

    def test_refuses_what_it_cannot_lower(self, target, tmp_path):
        """A float layer inside a quantized model has no integer form: check() names it."""
        from convdeploy.exporters.onnx_export import OnnxExporter
        from convdeploy.quant import W8A8, capture, quantize
        from tests.conftest import seeded_tiny_net

        _, _, batches = tiny_quantized()
        scheme = W8A8.with_(exclude=("fc",))
        qm = quantize(capture(seeded_tiny_net(), batches[0][:2]), scheme, batches[:1],
                      progress=False)
        art = OnnxExporter(quantized=True, example=batches[0][:2]).export(qm, tmp_path)
        reasons = target.check(art)
        assert reasons and "Gemm" in reasons[0], reasons

    def test_rounding_is_the_only_difference_from_onnx_runtime(self, target, tmp_path):
        """ORT requantizes in float: the integer reference differs by at most 1 LSB per layer,
        and the two agree on most outputs."""
        import onnxruntime as ort

        _, qdq = tiny_artifacts()
        x = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(9)).numpy()
        y = target.compile(qdq, tmp_path)({"input": x})["output"]
        o = ort.InferenceSession(str(qdq.path), providers=["CPUExecutionProvider"]).run(
            None, {"input": x})[0]
        steps = np.rint(np.abs(y - o) / qdq.output_scale)
        assert steps.max() <= 3 and (steps == 0).mean() > 0.5
