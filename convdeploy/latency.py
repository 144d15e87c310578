"""Latency: warm-up, then median and p90 of repeated timed runs (never a timed unit test)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

# Other processes' average CPU use (in cores) during a timed window from which the figure is
# flagged as disturbed: an idle machine measures ~0.00-0.02 here (kernel threads, the shell).
DISTURBED_CORES = 0.2


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
    load = load_snapshot()
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        runnable(inputs)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)),
            "min": float(ms.min()), "runs": len(times), **load_since(load)}


def _machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, stolen) CPU seconds of the whole machine since boot, from Linux's /proc/stat;
    None elsewhere."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 8:
        return None
    v = [int(x) for x in first[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq (guest is in user)
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, (v[7] if len(v) > 7 else 0) / tick


def load_snapshot() -> tuple | None:
    """Where the machine's and this process's CPU clocks stand (``load_since`` takes it)."""
    machine = _machine_cpu_seconds()
    return None if machine is None else (time.perf_counter(), time.process_time(), *machine)


def load_since(snapshot: tuple | None) -> dict:
    """What the rest of the machine did since ``snapshot``: the cores other processes kept busy
    on average (the machine's CPU time less this process's, every thread of it counted) and
    the cores the hypervisor stole. A timing is honest only when both are near 0: a latency
    figure taken beside other work is an upper bound (``disturbed``). Empty off Linux."""
    now = load_snapshot()
    if snapshot is None or now is None or now[0] <= snapshot[0]:
        return {}
    wall, mine, busy, steal = (b - a for a, b in zip(snapshot, now))
    return {"other_cpu_cores": round(max(0.0, busy - mine) / wall, 3),
            "steal_cpu_cores": round(max(0.0, steal) / wall, 3)}


def busy_cores(timing: dict) -> float:
    """The larger of the cores other processes and the hypervisor took during the timing."""
    return max(timing.get("other_cpu_cores") or 0.0, timing.get("steal_cpu_cores") or 0.0)


def disturbed(timing: dict) -> bool:
    """Was this timing taken while other processes (or the hypervisor) used the machine?"""
    return busy_cores(timing) >= DISTURBED_CORES


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
            "runs_batch": bn["runs"],
            **{k: max(b1[k], bn[k]) for k in ("other_cpu_cores", "steal_cpu_cores")
               if k in b1 and k in bn}}


def compare_windows(mine: list[float], other: list[float], *, same_config: bool = False,
                    alpha: float = 0.05) -> dict:
    """Is ``mine`` faster than ``other``? Both are per-window medians (ms) taken side by side
    (``tuning.candidates.alternating_windows``, a fresh session per window). The ratio is
    other's median over mine (> 1: mine is faster); the verdict is decided by a two-sided
    Mann-Whitney U test on the windows (no normality assumed; with 5 windows each, p < 0.05
    needs nearly separated windows). The same configuration is a tie whatever was measured."""
    from scipy.stats import mannwhitneyu

    ratio = float(np.median(other) / np.median(mine))
    if same_config:
        return {"ratio": ratio, "p": None, "verdict": "tie (same configuration)"}
    p = float(mannwhitneyu(mine, other, alternative="two-sided").pvalue)
    if p >= alpha:
        verdict = f"tie (windows indistinguishable, p={p:.2g})"
    else:
        verdict = f"{'faster' if ratio > 1 else 'slower'} (p={p:.2g})"
    return {"ratio": ratio, "p": p, "verdict": verdict}
