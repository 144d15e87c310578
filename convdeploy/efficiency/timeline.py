"""What a runtime says about its own kernels: one ``KernelTime`` per runtime node per run.

Each target that can profile (``cpu-ort``: ONNX Runtime's profiler; ``cpu-openvino``: its
performance counters; ``mobile-litert``: isolated one-op models) fills a ``Timeline``; the
efficiency analysis maps the kernels back to the layers of the exported graph. The kernel
names are the runtime's; ``refs`` are what ties a kernel to the exported graph: initializer,
tensor or node names it still carries after the runtime's fusions and renamings.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelTime:
    name: str  # the runtime's node name
    kernel: str  # op type or implementation (e.g. "QLinearConv", "brgconv_avx512_I8")
    ms: float  # mean time per run
    dtype: str  # "int8" | "float" | "int16": what the kernel computes in
    initializers: tuple[str, ...] = ()  # initializer names among its inputs
    tensors: tuple[str, ...] = ()  # tensor names among its outputs
    originals: tuple[str, ...] = ()  # exported-graph node names the runtime says it covers


@dataclass(frozen=True)
class Timeline:
    kernels: tuple[KernelTime, ...]
    run_ms: float  # the profiled run's own time per run (kernels + runtime overhead)
    method: str  # how the times were taken, shown beside every figure
    runs: int
    notes: tuple[str, ...] = field(default=())

    @property
    def kernel_ms(self) -> float:
        return sum(k.ms for k in self.kernels)
