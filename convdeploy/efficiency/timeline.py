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
    # the runtime's time between the previous kernel's end and this one's start (its dispatch
    # of the node), where the runtime's timeline shows it (ONNX Runtime's profile does)
    dispatch_ms: float = 0.0


@dataclass(frozen=True)
class Timeline:
    kernels: tuple[KernelTime, ...]
    run_ms: float  # the profiled run's own time per run (kernels + runtime overhead)
    method: str  # how the times were taken, shown beside every figure
    runs: int
    notes: tuple[str, ...] = field(default=())
    # what one inference costs the runtime with (next to) no work, measured on a one-op
    # model with the same settings: shown as its own row, not spread over layers
    per_inference_ms: float = 0.0
    # True: the profiler slows the kernels it times (ONNX Runtime's), so each kernel's share
    # of the profiled run is what counts; False: the kernels time themselves and the
    # profiler's cost falls between them (OpenVINO's counters), so their times are kept
    kernels_inflated: bool = True

    @property
    def kernel_ms(self) -> float:
        return sum(k.ms for k in self.kernels)
