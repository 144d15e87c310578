"""``gpu-torch`` / ``gpu-torch-fp16`` / ``gpu-torch-bf16``: the float model through PyTorch CUDA
(cuDNN convolutions), fp32 or under autocast: the float baseline a GPU user compares
``gpu-triton``'s int8 against."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase
from .cuda_device import cuda_graph, cuda_problem, event_times_ms


@dataclass
class TorchCudaRunnable:
    module: Any  # torch.nn.Module on the GPU
    autocast: str | None  # None (fp32), "float16" or "bfloat16"
    output_name: str
    threads: int = 1
    details: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = True  # NHWC activations: what cuDNN's tensor-core kernels want

    _graphs: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        import torch

        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def forward(self, x):
        import torch

        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = getattr(torch, self.autocast) if self.autocast else torch.float32
        # no autocast weight cache: a CUDA graph must not capture a cast it later skips
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, cache_enabled=False,
                                             enabled=self.autocast is not None):
            return self.module(x)

    def graphed(self, x):
        """The forward pass as a CUDA graph for ``x``'s shape: one launch, as gpu-triton is
        timed."""
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = cuda_graph(self.forward, x)
        return self._graphs[key]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        (x,) = inputs.values()
        y = self.forward(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda())
        return {self.output_name: y.float().cpu().numpy()}

    def device_times_ms(self, inputs: dict[str, np.ndarray], *, warmup: int, repeats: int,
                        graph: bool = True) -> np.ndarray:
        """Forward passes timed with CUDA events, the input already on the GPU; replayed as a
        CUDA graph unless ``graph`` is False (eager: each op launched from Python)."""
        import torch

        (x,) = inputs.values()
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        fn = self.graphed(xt) if graph else self.forward
        return event_times_ms(lambda: fn(xt), warmup=warmup, repeats=repeats)


class TorchCudaTarget(TargetBase):
    name = "gpu-torch"
    description = "the float model on an NVIDIA GPU through PyTorch CUDA (cuDNN), fp32"
    formats = (ArtifactFormat.TORCH,)
    runtime_module = "torch"
    runs_quantized: ClassVar[bool] = False  # the int8 model runs on gpu-triton
    autocast: ClassVar[str | None] = None

    def unavailable(self) -> str | None:
        return super().unavailable() or cuda_problem()

    def check_scheme(self, scheme) -> list[str]:
        return []  # it runs the float model whatever the scheme

    def check_ops(self, artifact: Artifact) -> list[str]:
        return [] if artifact.module is not None else ["the torch artifact holds no model"]

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> TorchCudaRunnable:
        import copy

        import torch

        from convdeploy.quant.fakequant import Mode

        qm = copy.deepcopy(artifact.module)  # the BN-folded graph, quantizers switched off
        qm.set_mode(Mode.OFF)
        module = qm.graph.cuda().eval()
        torch.backends.cudnn.benchmark = True
        return TorchCudaRunnable(module, self.autocast, artifact.output_name, options.threads,
                                 {"runtime": f"torch {torch.__version__}, cuDNN "
                                             f"{torch.backends.cudnn.version()}",
                                  "device": torch.cuda.get_device_name(),
                                  "precision": self.autocast or "float32",
                                  "memory_format": "channels_last",
                                  "latency_clock": "CUDA events, input resident on the GPU"})


class TorchCudaFp16Target(TorchCudaTarget):
    name = "gpu-torch-fp16"
    description = "the float model on an NVIDIA GPU through PyTorch CUDA, fp16 autocast"
    autocast = "float16"


class TorchCudaBf16Target(TorchCudaTarget):
    name = "gpu-torch-bf16"
    description = "the float model on an NVIDIA GPU through PyTorch CUDA, bf16 autocast"
    autocast = "bfloat16"
