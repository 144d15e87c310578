"""``convdeploy tune``: per-layer precision chosen by measured latency on a target under an
accuracy budget (in points, against the float model on the same images), beside the two
strategies peers use, in one run.

Data: the evaluation set is split once (seeded; by default in halves) into a tuning split,
which the searches see, and an evaluation split, on which only the final configurations are
scored (with intervals and McNemar's test against float). A configuration meets the budget on
the tuning split when the one-sided upper confidence bound of its paired drop against float
(``statistics.drop_upper_bound``, 95% by default) is within it: accepting on the point
estimate picked configurations the split flattered. Calibration runs once (min-max, no PTQ
method) and every candidate is derived from it (``candidates.py``). Gains: per-layer
sensitivity on the tuning split (``convdeploy inspect``'s measure: the accuracy lost when only
that layer is quantized).
Costs: per-layer latency from the target's profile of the all-low and the all-raised models
(``convdeploy.efficiency``), where the target has one.

On the HTP (no float layers; 8- or 16-bit activations per layer, 8-bit weights) the searches
raise layers from 8- to 16-bit activations, and since the emulator's timings say nothing about
a phone they minimise an estimate instead of a measurement (``candidates.py``), labelled so.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from convdeploy.audit import statistics as st
from convdeploy.config import DeployConfig
from convdeploy.errors import ConvdeployError
from convdeploy.latency import compare_windows

from . import search as S
from .candidates import A16, FLOAT, W8, CandidateRunner, alternating_windows


@dataclass(frozen=True)
class TuneConfig:
    target: str
    max_drop: float  # accuracy points (0.5 = half a percentage point)
    min_speedup: float | None = None  # over the float model on the target
    tune_size: int | None = None  # evaluation images the search sees (None: half of them)
    rounds: int = 5  # alternating end-to-end re-measurements of the final configurations
    seed: int = 0
    confidence: float = 0.95  # of the bound on each candidate's drop the searches accept on

    def __post_init__(self) -> None:
        if not self.max_drop >= 0:
            raise ConvdeployError(f"--max-drop {self.max_drop} is below 0",
                                  fix="give the accuracy you may lose in points, e.g. 0.5")
        if self.min_speedup is not None and not self.min_speedup > 0:
            raise ConvdeployError(f"--min-speedup {self.min_speedup} is not positive",
                                  fix="give a ratio over float latency, e.g. 1.5")
        if self.tune_size is not None and self.tune_size < 1:
            raise ConvdeployError("--tune-size must be at least 1", fix="e.g. --tune-size 1000")
        if not 0.5 <= self.confidence < 1:
            raise ConvdeployError(f"--confidence {self.confidence} is not in [0.5, 1)",
                                  fix="e.g. --confidence 0.95 (0.5: accept on the estimate)")


def choices(target) -> tuple[str, ...]:
    """The per-layer precisions ``target`` can run: float, 8- or 4-bit weights (activations at
    the scheme's 8 bits) where it runs float layers; on a quantized-only target (the HTP),
    8-bit weights with 8- or 16-bit activations."""
    found = []
    if getattr(target, "runs_float", True):
        found.append(FLOAT)
        found += [str(b) for b in (8, 4) if b in target.weight_bits]
    elif 8 in target.weight_bits:
        found.append(W8)
        if 16 in target.activation_bits:
            found.append(A16)
    if len(found) < 2:
        raise ConvdeployError(
            f"target {target.name} offers no per-layer choice to tune (it runs "
            f"{', '.join(found) or 'nothing'} per layer here)",
            fix="tune on cpu-ort, cpu-openvino, mobile-litert or dsp-qnn-htp")
    return tuple(found)


def raise_ladder(options: tuple[str, ...], fastest: str) -> tuple[str, ...]:
    """What a layer is raised to from the uniform start ``fastest``, in order: from all-4,
    8 bits then float (where the target runs float layers); from all-8, float, or on the
    HTP 16-bit activations."""
    if fastest != W8:
        return (W8, FLOAT) if FLOAT in options else (W8,)
    return (FLOAT,) if FLOAT in options else (A16,)


@dataclass
class TuneResult:
    model: str
    target: str
    layers: list[str]
    reference: dict
    uniform: dict
    searches: list[S.SearchResult]
    final: list[dict]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cost_key: str = "latency_ms"  # what the searches' steps carry (estimated_cost on the HTP)
    max_drop: float | None = None  # the budget, points

    def chosen(self) -> S.Config | None:
        return next(s.chosen for s in self.searches if s.strategy == "latency-driven")


def _split(eval_set, size: int | None, seed: int):
    n = len(eval_set)
    if eval_set.labels is None:
        raise ConvdeployError("tune needs labelled evaluation data",
                              fix="give --eval a folder of class folders or an .npz with 'y'")
    if size is None:
        if n < 2:
            raise ConvdeployError(f"--eval has {n} image(s): too few to split for tuning",
                                  fix="give --eval at least a few hundred labelled images")
        size = n // 2
    if size >= n:
        raise ConvdeployError(f"--tune-size {size} leaves no evaluation images (--eval has {n})",
                              fix=f"use --tune-size below {n}, e.g. {n // 2}")
    idx = np.random.default_rng(seed).permutation(n)
    return np.sort(idx[:size]), np.sort(idx[size:])


def tune(cfg: DeployConfig, tcfg: TuneConfig, workdir: Path) -> TuneResult:
    """Search (see the module doc); candidate files go under ``workdir``."""
    return tune_budgets(cfg, tcfg, workdir, (tcfg.max_drop,))[0]


def tune_budgets(cfg: DeployConfig, tcfg: TuneConfig, workdir: Path,
                 budgets: tuple[float, ...]) -> list[TuneResult]:
    """``tune`` at each accuracy budget (points) from one preparation: calibration, the float
    reference, the uniform models, sensitivities and costs are measured once, and every
    candidate measured for one budget is reused by the next (the searches see the same
    measurements, in a fraction of the time). Each result's ``seconds`` says what was shared."""
    import torch

    from convdeploy.pipeline import prepare_run
    from convdeploy.quant.ptq import calibrate
    from convdeploy.quant.sensitivity import layer_sensitivity
    from convdeploy.targets import registry

    for b in budgets:  # each refused before any work, as a single run would be
        replace(tcfg, max_drop=b)
    t_start = time.perf_counter()
    target = registry.get(tcfg.target)
    options = choices(target)
    refused = target.check_scheme(cfg.scheme.with_(overrides=())) if cfg.scheme else []
    if refused:
        raise ConvdeployError(f"target {tcfg.target} cannot run the base scheme: {refused[0]}",
                              fix="give --scheme w8a8 / --int8")
    if target.unavailable():
        raise ConvdeployError(f"target {tcfg.target} cannot run here: {target.unavailable()}",
                              fix="install its runtime or choose another --target")
    if cfg.scheme is None or cfg.scheme.weights.bits != 8 or cfg.scheme.activations is None \
            or cfg.scheme.activations.bits != 8:
        raise ConvdeployError("tune starts from the w8a8 scheme (every layer 8-bit, then "
                              "per-layer float or 4-bit weights)",
                              fix="drop --scheme, or give --scheme w8a8 / --int8")
    prep = prepare_run(cfg)
    pre = prep.preprocess
    tune_idx, eval_idx = _split(prep.eval_set, tcfg.tune_size, tcfg.seed)
    x_all = prep.eval_set.normalized(pre)
    y_all = prep.eval_set.labels
    batches = [torch.from_numpy(b) for b in prep.calib_set.batches(pre, 64)]
    calibrate(prep.qm, batches, progress=False)
    base_qm = prep.qm
    # the user's --override layers are fixed (prepare_run already refused unknown names)
    fixed = {o.layer for o in base_qm.scheme.overrides}
    layers = [x for x in _weighted_layers(base_qm)
              if not any(x == f or x.startswith(f + ".") for f in fixed)]
    work = Path(workdir)
    runner = CandidateRunner(prep.gm, base_qm, prep.example, x_all[tune_idx], y_all[tune_idx],
                             target, cfg.measure.threads, cfg.measure.batch_size, work,
                             calib=batches, min_time_s=cfg.measure.min_time_s,
                             workers=os.cpu_count() or 1)
    seconds = {"prepare": time.perf_counter() - t_start}
    t0 = time.perf_counter()
    reference, float_correct = _float_reference(prep, target, runner, cfg)

    def judged(c: S.Config) -> float:
        """The accuracy the budget judges: float's on the tuning split less the upper
        bound of the configuration's paired drop."""
        return reference["tune_accuracy"] - st.drop_upper_bound(
            float_correct, runner.measure(c).correct, confidence=tcfg.confidence)
    uniform = {}
    for p in [o for o in options if o != FLOAT]:
        cfg_p = S.config({x: p for x in layers}) if p != W8 else ()
        m = runner.measure(cfg_p)
        uniform[p] = {"config": cfg_p, "accuracy": m.accuracy, "latency_ms": m.latency_ms}
        if not runner.measures_latency:
            uniform[p]["estimated_cost"] = runner.estimated_cost(cfg_p)
    if runner.measures_latency and len(uniform) > 1:  # the start, decided on equal terms
        windows = runner.remeasure([u["config"] for u in uniform.values()], tcfg.rounds)
        for p, u in uniform.items():
            ms = windows[u["config"]]
            u.update(latency_ms=float(np.median(ms)), latency_windows_ms=ms)
    fastest = fastest_uniform({p: u["latency_ms"] for p, u in uniform.items()})
    base_cfg = uniform[fastest]["config"]
    ladder = raise_ladder(options, fastest)
    raise_to = ladder[0]
    x_tune = torch.from_numpy(x_all[tune_idx])
    rows = layer_sensitivity(base_qm, x_tune, y_all[tune_idx])
    gain = {r["layer"]: max(0.0, -r["accuracy_delta"]) + 1e-6 * max(0.0, 60 - r["sqnr_db"])
            for r in rows}
    if not runner.measures_latency:  # the estimate, layer by layer
        cost = {x: runner.estimated_cost(S.config({x: A16})) for x in layers}
    elif getattr(target, "profiles", False):
        cost, low = {}, base_cfg
        for rung in ladder:  # each rung's cost against the one below, from the profiles
            high = S.config({x: rung for x in layers})
            cost[rung] = _layer_costs(runner, target, low, high, cfg.measure.batch_size)
            low = high
        cost = {} if not all(cost.values()) else cost
    else:
        cost = {}
    seconds["sensitivity_and_profiles"] = time.perf_counter() - t0
    notes = [f"per-layer choices on {target.name}: {', '.join(options)}; the fastest uniform "
             f"configuration was all-{fastest} (measured, median of {tcfg.rounds} alternating "
             "windows: " + ", ".join(
                 f"{p}-bit {u['latency_ms']:.3f} ms" for p, u in uniform.items()
                 if u["latency_ms"] is not None) + f"; a narrower start must be "
             f"{100 * NARROWER_BY:.0f}% faster); layers are raised to {' then '.join(ladder)}"]
    if not runner.measures_latency:
        notes.append(f"{target.name}: {target.latency_not_meaningful}; the searches minimise "
                     "an estimate instead: the share of MACs at 16-bit activations")
    elif not cost:
        notes.append(f"{target.name} has no per-layer profile: layers are raised by "
                     "sensitivity alone")
    if len(budgets) > 1:
        notes.append(f"one preparation for budgets {', '.join(map(str, budgets))} points: "
                     "'prepare' and 'sensitivity_and_profiles' are shared, and candidates "
                     "measured for an earlier budget were reused")
    def confirm(cfgs: list[S.Config]) -> dict[S.Config, list[float]]:
        return runner.remeasure(cfgs, tcfg.rounds)

    results = []
    for max_drop in budgets:
        spent = dict(seconds)
        t_budget = time.perf_counter()
        budget = S.Budget(reference["tune_accuracy"], max_drop / 100,
                          reference["latency_ms"], tcfg.min_speedup)
        searches = []
        for name, fn in (
                ("latency-driven", lambda: S.latency_driven(
                    layers, base=base_cfg, raise_to=ladder, budget=budget,
                    accuracy=judged, latency=runner.cost, gain=gain, cost=cost,
                    confirm=confirm if runner.measures_latency else None)),
                ("revert-most-sensitive", lambda: S.revert_most_sensitive(
                    layers, base=base_cfg, raise_to=ladder, budget=budget,
                    accuracy=judged, gain=gain, latency=runner.cost)),
                ("first-fit", lambda: S.first_fit(
                    layers, base=base_cfg, raise_to=ladder, budget=budget,
                    accuracy=judged, latency=runner.cost))):
            t0 = time.perf_counter()
            searches.append(fn())
            spent[name] = time.perf_counter() - t0
            for step in searches[-1].steps:
                step.measured = runner.accuracy(step.config)
        t0 = time.perf_counter()
        final = _final(runner, prep, target, replace(tcfg, max_drop=max_drop), searches,
                       (f"all-{fastest}", base_cfg), x_all[eval_idx], y_all[eval_idx],
                       reference, raise_to)
        spent["final"] = time.perf_counter() - t0
        spent["total"] = spent["prepare"] + spent["sensitivity_and_profiles"] + \
            time.perf_counter() - t_budget
        results.append(TuneResult(
            prep.loaded.name, target.name, layers,
            {**reference, "tune_images": len(tune_idx), "eval_images": len(eval_idx),
             "confidence": tcfg.confidence},
            {p: {**u, "config": list(u["config"])} for p, u in uniform.items()},
            searches, final, spent, notes,
            "latency_ms" if runner.measures_latency else "estimated_cost", max_drop))
    runner.close()  # its scoring processes, if it started any (they also end with this one)
    return results


# a narrower uniform model must be at least this much faster to start from it: the 2026
# benchmark's all-4 and all-8 ResNet-56 measured 0.1-0.2% apart (ORT runs 4-bit weights in its
# int8 kernels), and noise then chose the less accurate start
NARROWER_BY = 0.03


def fastest_uniform(latency_ms: dict[str, float | None]) -> str:
    """The uniform precision to start from: 8-bit unless a narrower one is measurably faster
    (by ``NARROWER_BY``); 8-bit where the target has no latency."""
    base = latency_ms.get(W8)
    best = W8
    for p, ms in latency_ms.items():
        if p != W8 and ms is not None and base is not None and ms < base * (1 - NARROWER_BY) \
                and (latency_ms.get(best) is None or ms < latency_ms[best]):
            best = p
    return best


def _weighted_layers(qm) -> list[str]:
    from convdeploy.quant.sensitivity import weighted_layers

    return [layer.path for layer in weighted_layers(qm.graph) if layer.weight_q is not None]


def _float_reference(prep, target, runner, cfg) -> tuple[dict, np.ndarray]:
    """The float model on the target: the budget's reference (tuning split) and latency, and
    per tuning image whether it is right (the searches' paired bounds)."""
    import torch

    from convdeploy.exporters.onnx_export import OnnxExporter

    art = OnnxExporter(quantized=False, example=prep.example).export(
        prep.float_qm, runner.workdir / "float")
    if not getattr(target, "runs_float", True) or target.check(art):  # quantized-only target
        logits = prep.float_qm.float(torch.from_numpy(runner.tune_x)).numpy()
        correct = logits.argmax(1) == runner.tune_y
        return {"tune_accuracy": float(correct.mean()), "latency_ms": None, "artifact": None,
                "source": "torch float (the target runs quantized models only)"}, correct
    correct, latency = runner.run(art)
    return {"tune_accuracy": float(correct.mean()), "latency_ms": latency,
            "artifact": str(art.path), "source": f"float model on {target.name}"}, correct


def _layer_costs(runner, target, low: S.Config, high: S.Config, batch: int) -> dict[str, float]:
    """Per layer: its time in the all-raised model less its time in the all-low one, from the
    target's profile of each (shares of measured latency)."""
    from convdeploy.efficiency.peak import Peak
    from convdeploy.efficiency.profile import profile_artifact
    from convdeploy.exporters.artifact import Artifact, ArtifactFormat

    unused = {d: Peak(1.0, ((math.inf, 1.0),), "not used by tune") for d in ("float", "int8")}
    times = []
    for cfg in (low, high):
        path = runner.measure(cfg).artifact
        art = Artifact(path.stem, ArtifactFormat.ONNX, "tune", path=path)
        if art.format not in target.formats:
            return {}
        p = profile_artifact(art, path, target, path.parent / "profile", threads=runner.threads,
                             batch=batch, runs=50, warmup=5, min_time_s=runner.min_time_s,
                             peaks=unused)
        times.append({r.layer: r.ms for r in p.layers})
    return {layer: times[1].get(layer, 0.0) - ms for layer, ms in times[0].items()}


def _final(runner, prep, target, tcfg, searches, base, x_eval, y_eval,
           reference, raise_to: str) -> list[dict]:
    """Each search's choice, the uniform base and all-float (where the target runs it),
    re-measured end to end in alternating rounds (a fresh session each) and scored on the
    evaluation split; each baseline's row says whether the latency-driven choice is faster
    than it, slower, or a tie (``latency.compare_windows``)."""
    import torch

    from convdeploy.check import wilson_interval

    entries = [base]
    entries += [(s.strategy, s.chosen) for s in searches if s.chosen is not None]
    if reference.get("artifact"):
        entries.append(("float", None))
    rows = []
    scored = runner.scored  # a file chosen twice (or for another budget) is scored once
    for label, cfg_ in entries:
        path = Path(reference["artifact"]) if cfg_ is None else runner.measure(cfg_).artifact
        if path not in scored:
            scored[path] = runner.top1(path, x_eval)
        preds = scored[path]
        rows.append({"label": label, "config": None if cfg_ is None else list(cfg_),
                     "raised": (len(_weighted_layers(runner.base)) if cfg_ is None
                                else sum(1 for _, p in cfg_ if p == FLOAT)),
                     "raised_to_" + raise_to: (None if cfg_ is None
                                               else sum(1 for _, p in cfg_ if p == raise_to)),
                     "estimate": None if cfg_ is None or runner.measures_latency
                     else runner.estimated_cost(cfg_),
                     "session": runner.session(path, label), "correct": preds == y_eval})
    windows: dict[str, list[float]] = {r["label"]: [] for r in rows}
    if runner.measures_latency:
        windows = alternating_windows({r["label"]: r["session"] for r in rows},
                                      runner.batch_input(x_eval), rounds=tcfg.rounds,
                                      repeats=runner.repeats, min_time_s=runner.min_time_s)
    float_row = next((r for r in rows if r["label"] == "float"), None)
    if float_row is None:  # the float model scored in torch
        logits = prep.float_qm.float(torch.from_numpy(x_eval)).numpy()
        float_correct = logits.argmax(1) == y_eval
    else:
        float_correct = float_row["correct"]
    out = []
    for r in rows:
        acc = wilson_interval(int(r["correct"].sum()), len(y_eval))
        test = st.mcnemar(float_correct, r["correct"])
        diff, low, high = st.paired_bootstrap(float_correct, r["correct"], resamples=2000)
        ms = windows[r["label"]]
        out.append({"label": r["label"], "config": r["config"], "float_layers": r["raised"],
                    "accuracy": acc.value, "accuracy_ci95": [acc.ci95_low, acc.ci95_high],
                    "accuracy_delta_points": 100 * diff, "delta_ci95_points":
                    [100 * low, 100 * high], "mcnemar_p": test.p_exact,
                    "verdict": st.verdict(test, diff),
                    "meets_budget": -100 * diff <= tcfg.max_drop + 1e-9,
                    "latency_ms": float(np.median(ms)) if ms else None,
                    "latency_windows_ms": ms,
                    **({} if r["estimate"] is None else {"estimated_cost": r["estimate"]}),
                    **{k: v for k, v in r.items() if k.startswith("raised_to_")}})
    ours = next((r for r in out if r["label"] == "latency-driven"), None)
    if ours is not None and ours["latency_windows_ms"]:
        for r in out:
            if r["label"] in ("revert-most-sensitive", "first-fit"):
                r["latency_driven_vs_this"] = compare_windows(
                    ours["latency_windows_ms"], r["latency_windows_ms"],
                    same_config=_model_of(r["config"]) == _model_of(ours["config"]))
    return out


def _model_of(cfg) -> set:
    """What a configuration changes: a layer listed at 8 bits is the base scheme's."""
    return {(layer, p) for layer, p in cfg or () if p != W8}
