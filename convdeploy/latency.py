"""Latency: warm-up, then median and p90 of repeated timed runs (never a timed unit test)."""
from __future__ import annotations

import time

import numpy as np


def time_runs(runnable, inputs: dict[str, np.ndarray], *, warmup: int, repeats: int,
              min_time_s: float = 0.0) -> dict:
    """Median/p90/min in milliseconds of at least ``repeats`` calls, timed for at least
    ``min_time_s`` seconds in all, after ``warmup`` untimed ones.

    The time floor is what makes a sub-millisecond model's figure trustworthy: 30 runs of a
    0.3 ms model span 10 ms, and a disturbance that short (measured here: ~1% of such windows
    on this 2-core VM, up to 2x slower) shifts the whole median; over a second it moves a
    few percent of the runs, not the median (TFLite's benchmark_model also times >= 1 s).

    A runnable on an accelerator (``device_times_ms``, the GPU targets) times itself with the
    device's own clock (CUDA events, input resident), not the host's wall clock around a
    copy in and out."""
    device_clock = getattr(runnable, "device_times_ms", None)
    if device_clock is not None:
        ms = np.asarray(device_clock(inputs, warmup=warmup, repeats=repeats))
        return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
                "min": float(ms.min()), "runs": repeats, "clock": "device"}
    for _ in range(warmup):
        runnable(inputs)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        runnable(inputs)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "min": float(ms.min()), "runs": len(times)}


def measure(runnable, sample: np.ndarray, input_name: str, *, batch_size: int, warmup: int,
            repeats: int, min_time_s: float = 0.0) -> dict:
    """Latency at batch 1 and at ``batch_size`` (repeats scaled down for the larger batch;
    the same time floor for both)."""
    one = {input_name: np.ascontiguousarray(sample[:1])}
    reps = np.resize(sample, (batch_size, *sample.shape[1:])).astype(np.float32)
    batch = {input_name: np.ascontiguousarray(reps)}
    b1 = time_runs(runnable, one, warmup=warmup, repeats=repeats, min_time_s=min_time_s)
    bn = time_runs(runnable, batch, warmup=max(1, warmup // 5),
                   repeats=max(5, repeats // 5), min_time_s=min_time_s)
    return {"batch1_median": b1["median"], "batch1_p90": b1["p90"],
            f"batch{batch_size}_median": bn["median"], f"batch{batch_size}_p90": bn["p90"],
            "batch_size": batch_size, "per_image_at_batch_ms": bn["median"] / batch_size,
            "threads": getattr(runnable, "threads", None), "runs_batch1": b1["runs"],
            "runs_batch": bn["runs"]}
