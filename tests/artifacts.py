"""Session-wide tiny quantized model and its exported ONNX artifacts (exports take seconds)."""
from __future__ import annotations

import functools

import torch

from tests.conftest import scratch_dir, seeded_tiny_net


@functools.lru_cache(maxsize=None)
def tiny_quantized():
    from convdeploy.quant import W8A8, capture, quantize

    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 3, 16, 16, generator=gen) for _ in range(4)]
    model = seeded_tiny_net()
    qm = quantize(capture(model, batches[0][:2]), W8A8, batches, progress=False)
    return model, qm, batches


@functools.lru_cache(maxsize=None)
def tiny_artifacts():
    """(float artifact, QDQ artifact) of the tiny model, written to a temp directory."""
    from convdeploy.exporters.onnx_export import OnnxExporter

    _, qm, batches = tiny_quantized()
    directory = scratch_dir("convdeploy-test-")
    example = batches[0][:2]
    return (OnnxExporter(quantized=False, example=example).export(qm, directory),
            OnnxExporter(quantized=True, example=example).export(qm, directory))


@functools.lru_cache(maxsize=None)
def tiny_tflite_artifacts():
    """(float, int8) ``.tflite`` of the tiny model, written from its ONNX artifacts."""
    from convdeploy.exporters.tflite_export import TfliteExporter

    flt, qdq = tiny_artifacts()
    directory = scratch_dir("convdeploy-test-tflite-")
    return TfliteExporter().export(flt, directory), TfliteExporter().export(qdq, directory)
