"""``cpu-openvino``: OpenVINO on the CPU plugin.

Float models run with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX/AVX512-BF16 OpenVINO
otherwise silently runs bf16, and a "float" row would carry bf16 error. QDQ models become
FakeQuantize ops that OpenVINO's low-precision transformations turn into u8/i8 kernels.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase

_STRUCTURAL = {"Parameter", "Result", "Constant"}
_WEIGHTED_LAYERS = {"Convolution", "FullyConnected"}


def _message(exc: Exception) -> str:
    """OpenVINO errors start with source locations; keep the lines that say what is wrong."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return " ".join(useful or lines)[:400]


@dataclass
class OpenVinoRunnable:
    request: Any
    output_name: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        self.request.infer({0: x})
        return {self.output_name: self.request.get_output_tensor(0).data.copy()}


class OpenVinoCpuTarget(TargetBase):
    name = "cpu-openvino"
    description = "OpenVINO CPU plugin (f32 precision hint; u8/i8 kernels for QDQ models)"
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "openvino"

    def _read(self, artifact: Artifact):
        import openvino as ov

        core = ov.Core()
        return core, core.read_model(str(artifact.path))

    def check_ops(self, artifact: Artifact) -> list[str]:
        try:
            core, model = self._read(artifact)
            supported = core.query_model(model, "CPU")
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            return [f"OpenVINO cannot read {artifact.path.name}: {_message(exc)}"]
        missing = [f"{op.get_type_name()} ({op.get_friendly_name()})" for op in model.get_ops()
                   if op.get_type_name() not in _STRUCTURAL
                   and op.get_friendly_name() not in supported]
        return [f"OpenVINO CPU cannot run op {m}" for m in missing[:10]]

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> OpenVinoRunnable:
        import openvino as ov

        core, model = self._read(artifact)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": options.threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        compiled = core.compile_model(model, "CPU", config)
        # Which precision each conv / fully-connected kernel really runs in (u8 = int8 path).
        precisions = Counter()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].value in _WEIGHTED_LAYERS:
                precisions[info["runtimePrecision"].value] += 1
        details = {"runtime": f"openvino {ov.__version__}", "inference_precision_hint": "f32",
                   "weighted_layer_precisions": dict(precisions)}
        return OpenVinoRunnable(compiled.create_infer_request(), artifact.output_name,
                                options.threads, details)
