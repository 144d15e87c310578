"""Mixed-precision search strategies over per-layer precisions, framework-neutral: each takes
the layers, a measured-accuracy function and a measured-latency function of a configuration
(``Config``: layer -> precision, unlisted layers at the base precision) and returns the path it
walked. The run (``tuning.run``) measures; tests drive the same code with constructed
functions.

- ``latency_driven`` (convdeploy's): from the fastest uniform configuration, raise the layer
  with the best estimated accuracy gain per estimated latency cost (per-layer sensitivity,
  and per-layer latency deltas from the runtime's profile) until the budget holds on the
  measured accuracy; then drop every raise the budget does not need, the most expensive
  first, and among the feasible configurations met, keep the fastest *measured* one: the
  few fastest by their one measurement are measured again side by side (``confirm``) and
  the fastest of those is chosen, since one measurement of a sub-millisecond model can be
  10% off.
- ``revert_most_sensitive`` (NNCF's accuracy control): raise layers to float in order of
  sensitivity until the budget holds; no latency term.
- ``first_fit`` (Intel Neural Compressor's basic strategy): walk a fixed order - all low
  precision, then each single layer in float in graph order, then cumulative fallback in
  graph order - and stop at the first configuration that meets the budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Callable

Config = tuple[tuple[str, str], ...]  # sorted (layer, precision) pairs away from the base


def config(changes: dict[str, str]) -> Config:
    return tuple(sorted(changes.items()))


@dataclass
class Step:
    config: Config
    accuracy: float  # what the budget judged (the run passes a lower confidence bound)
    latency_ms: float | None
    note: str
    measured: float | None = None  # the accuracy measured, where ``accuracy`` is a bound


@dataclass
class SearchResult:
    strategy: str
    chosen: Config | None  # None: no configuration met the budget
    steps: list[Step] = field(default_factory=list)
    # the shortlist measured again before choosing: configuration -> latency windows (ms)
    confirmed: dict[Config, list[float]] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        return len(self.steps)


class Budget:
    """Accuracy floor (the reference accuracy less ``max_drop``) and an optional latency
    ceiling (the reference latency over ``min_speedup``)."""

    def __init__(self, reference_accuracy: float, max_drop: float,
                 reference_latency: float | None = None, min_speedup: float | None = None):
        self.floor = reference_accuracy - max_drop
        self.ceiling = (reference_latency / min_speedup
                        if reference_latency and min_speedup else None)

    def accuracy_ok(self, accuracy: float) -> bool:
        return accuracy >= self.floor - 1e-12

    def latency_ok(self, latency_ms: float | None) -> bool:
        return self.ceiling is None or (latency_ms is not None and latency_ms <= self.ceiling)


Measure = Callable[[Config], float]
# re-measures a shortlist side by side: configuration -> its latency windows (ms)
Confirm = Callable[[list[Config]], dict[Config, list[float]]]
SHORTLIST = 4  # feasible configurations measured again before the latency-driven choice


def _step(steps: list[Step], cfg: Config, accuracy: Measure, latency: Measure | None,
          note: str) -> Step:
    step = Step(cfg, accuracy(cfg), latency(cfg) if latency else None, note)
    steps.append(step)
    return step


def latency_driven(layers: list[str], *, base: Config, raise_to: str, budget: Budget,
                   accuracy: Measure, latency: Measure, gain: dict[str, float],
                   cost: dict[str, float], confirm: Confirm | None = None) -> SearchResult:
    """See the module doc. ``gain``: estimated accuracy recovered by raising a layer alone
    (sensitivity); ``cost``: estimated latency added by raising it (>= 0 is typical; a layer
    whose raise is free or faster goes first); ``confirm``: re-measures the ``SHORTLIST``
    fastest feasible configurations (without it, each one's first measurement decides)."""
    steps: list[Step] = []
    changes = dict(base)
    current = _step(steps, config(changes), accuracy, latency, "start: fastest uniform")
    raised: list[str] = []
    while not budget.accuracy_ok(current.accuracy):
        candidates = [x for x in layers if changes.get(x) != raise_to]
        if not candidates:
            break
        best = max(candidates, key=lambda x: max(gain.get(x, 0.0), 1e-9) /
                   max(cost.get(x, 0.0), 1e-6))
        changes[best] = raise_to
        raised.append(best)
        current = _step(steps, config(changes), accuracy, latency,
                        f"raise {best} (gain {gain.get(best, 0):+.4f}, cost "
                        f"{cost.get(best, 0):+.4f} ms)")
    if budget.accuracy_ok(current.accuracy):
        for layer in sorted(raised, key=lambda x: -cost.get(x, 0.0)):  # drop what is not needed
            trial = {k: v for k, v in changes.items() if k != layer}
            if layer in dict(base):
                trial[layer] = dict(base)[layer]
            step = _step(steps, config(trial), accuracy, latency, f"try without {layer}")
            if budget.accuracy_ok(step.accuracy):
                changes = trial
    met = {s.config: s.latency_ms for s in steps if budget.accuracy_ok(s.accuracy)}
    if confirm is None or not met:
        feasible = {c: ms for c, ms in met.items() if budget.latency_ok(ms)}
        chosen = min(feasible, key=feasible.get) if feasible else None
        return SearchResult("latency-driven", chosen, steps)
    shortlist = sorted(met, key=lambda c: met[c])[:SHORTLIST]
    confirmed = confirm(shortlist)
    again = {c: median(confirmed[c]) for c in shortlist}
    feasible = [c for c in shortlist if budget.latency_ok(again[c])]
    chosen = min(feasible, key=again.get) if feasible else None
    return SearchResult("latency-driven", chosen, steps, confirmed)


def revert_most_sensitive(layers: list[str], *, base: Config, raise_to: str, budget: Budget,
                          accuracy: Measure, gain: dict[str, float],
                          latency: Measure | None = None) -> SearchResult:
    steps: list[Step] = []
    changes = dict(base)
    current = _step(steps, config(changes), accuracy, latency, "start")
    for layer in sorted(layers, key=lambda x: -gain.get(x, 0.0)):
        if budget.accuracy_ok(current.accuracy):
            break
        changes[layer] = raise_to
        current = _step(steps, config(changes), accuracy, latency, f"revert {layer}")
    ok = budget.accuracy_ok(current.accuracy)
    return SearchResult("revert-most-sensitive", current.config if ok else None, steps)


def first_fit(layers: list[str], *, base: Config, raise_to: str, budget: Budget,
              accuracy: Measure, latency: Measure | None = None) -> SearchResult:
    steps: list[Step] = []
    orders = [dict(base)]
    orders += [{**dict(base), x: raise_to} for x in layers]
    cumulative = dict(base)
    for x in layers:
        cumulative = {**cumulative, x: raise_to}
        orders.append(dict(cumulative))
    seen = set()
    for changes in orders:
        cfg = config(changes)
        if cfg in seen:
            continue
        seen.add(cfg)
        step = _step(steps, cfg, accuracy, latency, "next in order")
        if budget.accuracy_ok(step.accuracy):
            return SearchResult("first-fit", cfg, steps)
    return SearchResult("first-fit", None, steps)
