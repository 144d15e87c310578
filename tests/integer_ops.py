"""The round trip every integer op is proved by: a tiny seeded torch model is quantized
(W8A8 by default), exported as QDQ ONNX, lowered, run by the integer reference and, written as
``.tflite``, by LiteRT's reference kernels (they must agree bit for bit), and by ONNX Runtime
(judged in output LSBs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tests.conftest import scratch_dir


@dataclass
class RoundTrip:
    int_reference: np.ndarray
    litert_ref: np.ndarray
    ort: np.ndarray
    float_torch: np.ndarray
    float_litert: np.ndarray | None
    output_scale: float
    graph: object  # the lowered OpGraph
    qdq: object  # the QDQ Artifact
    tflite: object

    def lsb(self, other: np.ndarray) -> float:
        """Largest distance to the integer reference in output LSBs (to 1/1000: the outputs
        are dequantized floats)."""
        return round(float(np.abs(other - self.int_reference).max() / self.output_scale), 3)


def roundtrip(model: torch.nn.Module, shape: tuple[int, ...], *, seed: int = 0, scheme=None,
              samples: int = 64, float_model: bool = True) -> RoundTrip:
    """Run ``model`` (inputs of per-sample ``shape``) through every integer consumer (and its
    float export through LiteRT, unless ``float_model`` is False)."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed "
                                                 "(pip install 'convdeploy[mobile]')")
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.exporters.tflite_export import TfliteExporter
    from convdeploy.quant import W8A8, capture, quantize
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions

    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randn(8, *shape, generator=gen) for _ in range(4)]
    model = model.eval()
    qm = quantize(capture(model, batches[0][:2]), scheme or W8A8, batches, progress=False)
    work = scratch_dir("convdeploy-op-")
    example = batches[0][:2]
    qdq = OnnxExporter(quantized=True, example=example).export(qm, work)
    x = torch.randn(samples, *shape, generator=gen)

    def run(target: str, artifact) -> np.ndarray:
        runnable = registry.get(target).compile(artifact, work, options=RuntimeOptions(1))
        return next(iter(runnable({"input": x.numpy()}).values()))

    tfl = TfliteExporter().export(qdq, work)
    with torch.no_grad():
        expected = model(x).numpy()
    float_litert = None
    if float_model:
        flt = OnnxExporter(quantized=False, example=example).export(qm, work)
        float_litert = run("mobile-litert-ref", TfliteExporter().export(flt, work))
    return RoundTrip(run("int-reference", qdq), run("mobile-litert-ref", tfl), run("cpu-ort", qdq),
                     expected, float_litert, float(qdq.output_scale), lower_file(qdq.path), qdq,
                     tfl)
