"""``reference``: the torch graph itself, float (quantizers off) or fake-quant simulation.

It is always available, so every report can split end-to-end error into the quantization error
(float vs simulation) and the backend error (simulation vs target, in output LSBs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase


@dataclass
class TorchRunnable:
    model: Any  # convdeploy.quant.QuantizedModel
    quantized: bool
    output_name: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        torch.set_num_threads(self.threads)
        (x,) = inputs.values()
        x = torch.from_numpy(np.ascontiguousarray(x))
        y = self.model.simulate(x) if self.quantized else self.model.float(x)
        return {self.output_name: y.numpy()}


class ReferenceTarget(TargetBase):
    name = "reference"
    description = "PyTorch float graph and fake-quant simulation (the numerics contract in torch)"
    formats = (ArtifactFormat.TORCH,)
    runtime_module = "torch"

    def check_ops(self, artifact: Artifact) -> list[str]:
        return [] if artifact.module is not None else ["the torch artifact holds no model"]

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> TorchRunnable:
        import torch

        return TorchRunnable(artifact.module, artifact.quantized, artifact.output_name,
                             options.threads, {"runtime": f"torch {torch.__version__}"})
