"""What the GPU targets need of a CUDA device: whether one is here, and timing with CUDA events.

Under ``TRITON_INTERPRET=1`` Triton runs its kernels on the CPU (numpy), which is how the
integer kernels are proved exact on machines without a GPU; their timings then mean nothing.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable

import numpy as np


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def cuda_problem() -> str | None:
    """Why no CUDA device can run here (None: one can)."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return f"no CUDA device (torch {torch.__version__} is a CPU-only build)"
        return f"no CUDA device visible to torch {torch.__version__} (CUDA {torch.version.cuda})"
    return None


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def event_times_ms(fn: Callable[[], object], *, warmup: int, repeats: int) -> np.ndarray:
    """Milliseconds of ``repeats`` calls of ``fn`` on the current CUDA stream, each between two
    CUDA events, after ``warmup`` untimed calls (Triton compiles on the first)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return np.array([s.elapsed_time(e) for s, e in zip(starts, ends)])


def cuda_graph(forward: Callable, x) -> Callable:
    """``forward`` captured as a CUDA graph for ``x``'s shape and dtype, after warm-up runs on
    a side stream (kernels compiled, lazy state built, as PyTorch requires): a function that
    copies new input into the graph's and replays it (one launch for the whole pass)."""
    import torch

    static_in = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            forward(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = forward(static_in)

    def replay(new_x):
        static_in.copy_(new_x)
        graph.replay()
        return static_out
    return replay
