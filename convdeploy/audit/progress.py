"""The sweep's progress bar and its time-left estimate.

A sweep's units differ in cost by three orders of magnitude (a cpu-ort accuracy unit takes
seconds, the same model on the HTP emulator most of an hour), so a bar's usual estimate, the
mean time per unit so far times the units left, is wrong by hours whichever units came first.
The estimate here is per unit: the mean duration of finished units of the same kind, model and
target (else kind and target, else kind), from this run and from the cells of earlier runs in
the same folder, summed per phase and divided by that phase's parallelism (the workers for
quantize and accuracy units, 1 for latency). Units with no finished peer yet are counted and
named as not estimated rather than guessed.
"""
from __future__ import annotations

from collections import defaultdict


def unit_seconds(record: dict) -> float | None:
    """How long a finished unit took (``unit_seconds``; cells of older runs: their eval or
    quantization time)."""
    for key in ("unit_seconds", "eval_seconds", "quantize_seconds"):
        if isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def _keys(unit) -> list[tuple]:
    source = getattr(unit, "source", unit)
    model = source.model.label
    target = getattr(unit, "target", None)
    return [(unit.kind, model, target), (unit.kind, target), (unit.kind,)]


class TimeLeft:
    """Estimates the time left of a sweep from the durations of its finished units."""

    def __init__(self, todo: list, workers: int) -> None:
        self.left = list(todo)
        self.workers = max(1, workers)
        self._sums: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])

    def finished(self, unit, seconds: float | None) -> None:
        """A unit finished (now, or in an earlier run when ``unit`` is not among those left)."""
        if unit in self.left:
            self.left.remove(unit)
        if seconds is None:
            return
        for key in _keys(unit):
            total = self._sums[key]
            total[0] += seconds
            total[1] += 1

    def _estimate(self, unit) -> float | None:
        for key in _keys(unit):
            total, count = self._sums.get(key, (0.0, 0))
            if count:
                return total / count
        return None

    def seconds(self) -> tuple[float, int]:
        """(estimated seconds left, how many units left have no estimate yet)."""
        per_phase: dict[str, list[float]] = defaultdict(list)
        unknown = 0
        for unit in self.left:
            est = self._estimate(unit)
            if est is None:
                unknown += 1
            else:
                per_phase[unit.kind].append(est)
        left = 0.0
        for kind, times in per_phase.items():
            n = sum(u.kind == kind for u in self.left)
            lanes = 1 if kind == "latency" else min(self.workers, n)
            left += sum(times) / lanes
        return left, unknown

    def text(self) -> str:
        left, unknown = self.seconds()
        if not self.left:
            return ""
        shown = _duration(left)
        if unknown == len(self.left):
            return "time left: estimated once a unit of each kind finishes"
        return (f"~{shown} left" + (f" (+{unknown} units not yet estimated)" if unknown else ""))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_bar(total: int, enabled: bool):
    """A bar of units done / total; the time left goes in its postfix (``TimeLeft.text``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="audit", unit="unit", disable=not enabled or total == 0,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                           "[{elapsed}{postfix}]")
