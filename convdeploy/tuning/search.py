"""Mixed-precision search strategies over per-layer precisions, framework-neutral: each takes
the layers, a measured-accuracy function and a measured-latency function of a configuration
(``Config``: layer -> precision, unlisted layers at the base precision) and returns the path it
walked. The run (``tuning.run``) measures; tests drive the same code with constructed
functions.

- ``latency_driven`` (convdeploy's): from the fastest uniform configuration, first measure
  each layer raised alone (one rung): the accuracy it recovers *in this configuration*
  replaces the sensitivity estimate, which near the floor is noise (ResNet-56 at a 0.2-point
  budget: estimated gains of 0.0000-0.0008 walked ten raises where first-fit found one layer
  enough). Then raise the layer with the best gain per estimated latency cost (per-layer
  latency deltas from the runtime's profile) until the budget holds on the measured
  accuracy; drop every raise the budget does not need, the most expensive first; and among
  the feasible configurations met, the few cheapest by the profile's estimate are measured
  side by side (``confirm``) and the fastest of those is chosen: one measurement of a
  sub-millisecond model can be 10% off, more than most layers' cost.
- ``revert_most_sensitive`` (NNCF's accuracy control): raise layers to float in order of
  sensitivity until the budget holds; no latency term.
- ``first_fit`` (Intel Neural Compressor's basic strategy): walk a fixed order - all low
  precision, then each single layer in float in graph order, then cumulative fallback in
  graph order - and stop at the first configuration that meets the budget.

Each raises along the same ladder (``rungs``): from an all-4-bit start on a CPU runtime, to
8 bits and, once every layer is there and the budget still does not hold, to float.
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


Ladder = str | tuple[str, ...]


def rungs(raise_to: Ladder) -> tuple[str, ...]:
    """The precisions a layer can be raised to, in order: from all-4 on a CPU runtime
    ``("8", "float")``; one precision is a ladder of one rung."""
    return (raise_to,) if isinstance(raise_to, str) else tuple(raise_to)


def _level(changes: dict[str, str], layer: str, ladder: tuple[str, ...]) -> int:
    """How far up the ladder ``layer`` is: 0 at the start, i + 1 at ``ladder[i]``."""
    p = changes.get(layer)
    return ladder.index(p) + 1 if p in ladder else 0


def _per_rung(values: dict, ladder: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per-layer estimates given once for every rung, or per rung (rung -> layer -> value)."""
    if values and all(isinstance(v, dict) for v in values.values()):
        return {r: values.get(r, {}) for r in ladder}
    return {r: values for r in ladder}


def latency_driven(layers: list[str], *, base: Config, raise_to: Ladder, budget: Budget,
                   accuracy: Measure, latency: Measure, gain: dict[str, float],
                   cost: dict, confirm: Confirm | None = None,
                   probe: bool = True) -> SearchResult:
    """See the module doc. ``raise_to``: a precision or a ladder of them (``rungs``): the
    layers are raised to the first rung until the budget holds, and only when every layer is
    there and it still does not, on to the next. ``gain``: estimated accuracy recovered by
    raising a layer alone (sensitivity); ``cost``: estimated latency added by raising it,
    per layer or per rung then layer (>= 0 is typical; a layer whose raise is free or faster
    goes first); ``confirm``: re-measures the ``SHORTLIST`` cheapest feasible configurations
    (without it, each one's first measurement decides); ``probe``: measure every single raise
    first (see the module doc)."""
    ladder = rungs(raise_to)
    costs = _per_rung(cost, ladder)
    steps: list[Step] = []
    changes = dict(base)
    current = _step(steps, config(changes), accuracy, latency, "start: fastest uniform")
    gains = {rung: gain for rung in ladder}
    if probe and not budget.accuracy_ok(current.accuracy):
        rung = ladder[0]
        gains[rung] = {x: _step(steps, config({**changes, x: rung}), accuracy, latency,
                                f"probe {x} alone at {rung}").accuracy - current.accuracy
                       for x in layers}
    moves: list[tuple[str, str | None, str]] = []  # (layer, from, to)
    for level, rung in enumerate(ladder, 1):
        while not budget.accuracy_ok(current.accuracy):
            candidates = [x for x in layers if _level(changes, x, ladder) < level]
            if not candidates:
                break
            best = max(candidates, key=lambda x: max(gains[rung].get(x, 0.0), 1e-9) /
                       max(costs[rung].get(x, 0.0), 1e-6))
            moves.append((best, changes.get(best), rung))
            changes[best] = rung
            current = _step(steps, config(changes), accuracy, latency,
                            f"raise {best} to {rung} (gain "
                            f"{gains[rung].get(best, 0):+.4f}, cost "
                            f"{costs[rung].get(best, 0):+.4f} ms)")
    if budget.accuracy_ok(current.accuracy):  # drop what is not needed, dearest first
        for layer, before, rung in sorted(moves, key=lambda m: -costs[m[2]].get(m[0], 0.0)):
            if changes.get(layer) != rung:
                continue
            trial = {k: v for k, v in changes.items() if k != layer}
            if before is not None:
                trial[layer] = before
            step = _step(steps, config(trial), accuracy, latency,
                         f"try {layer} back at {before or 'the start precision'}")
            if budget.accuracy_ok(step.accuracy):
                changes = trial
    met = {s.config: s.latency_ms for s in steps if budget.accuracy_ok(s.accuracy)}
    if confirm is None or not met:
        feasible = {c: ms for c, ms in met.items() if budget.latency_ok(ms)}
        chosen = min(feasible, key=feasible.get) if feasible else None
        return SearchResult("latency-driven", chosen, steps)
    def estimate(cfg: Config) -> float:  # the profile's cost of its raises (ms)
        at = dict(cfg)
        return sum(costs[r].get(x, 0.0) for x in layers for r in ladder[:_level(at, x, ladder)])

    shortlist = sorted(met, key=lambda c: (estimate(c), met[c] or 0.0))[:SHORTLIST]
    confirmed = confirm(shortlist)
    again = {c: median(confirmed[c]) for c in shortlist}
    feasible = [c for c in shortlist if budget.latency_ok(again[c])]
    chosen = min(feasible, key=again.get) if feasible else None
    return SearchResult("latency-driven", chosen, steps, confirmed)


def revert_most_sensitive(layers: list[str], *, base: Config, raise_to: Ladder,
                          budget: Budget, accuracy: Measure, gain: dict[str, float],
                          latency: Measure | None = None) -> SearchResult:
    steps: list[Step] = []
    changes = dict(base)
    current = _step(steps, config(changes), accuracy, latency, "start")
    for rung in rungs(raise_to):  # the next rung only once every layer is on this one
        for layer in sorted(layers, key=lambda x: -gain.get(x, 0.0)):
            if budget.accuracy_ok(current.accuracy):
                break
            changes[layer] = rung
            current = _step(steps, config(changes), accuracy, latency,
                            f"revert {layer} to {rung}")
    ok = budget.accuracy_ok(current.accuracy)
    return SearchResult("revert-most-sensitive", current.config if ok else None, steps)


def first_fit(layers: list[str], *, base: Config, raise_to: Ladder, budget: Budget,
              accuracy: Measure, latency: Measure | None = None) -> SearchResult:
    steps: list[Step] = []
    orders = [dict(base)]
    start = dict(base)
    for rung in rungs(raise_to):  # per rung, from every layer on the one below
        orders += [{**start, x: rung} for x in layers]
        cumulative = dict(start)
        for x in layers:
            cumulative = {**cumulative, x: rung}
            orders.append(dict(cumulative))
        start = cumulative
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
