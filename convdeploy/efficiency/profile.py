"""``convdeploy profile``: export (and quantize) a model as ``export`` does, then profile every
artifact on each profiling target at the run's threads and batch: latency unprofiled, per-layer
shares from the runtime's profiler, costs from the exported graph, bounds from this machine's
measured peaks. Writes ``profile.json``, ``profile.md`` and the waterline and efficiency-gap
plots into ``--out``."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convdeploy.config import DeployConfig
from convdeploy.errors import ConvdeployError

from .analysis import EfficiencyProfile, analyse
from .costs import GraphIndex
from .peak import Peak, peak_for

DTYPES = ("float", "int8")


@dataclass(frozen=True)
class ProfileConfig:
    runs: int = 50  # profiled runs (after warm-up)
    warmup: int = 10
    peaks: tuple[tuple[str, Peak], ...] = ()  # given per dtype; the rest are measured
    refresh_peaks: bool = False

    @staticmethod
    def parse_peak(text: str) -> tuple[str, Peak]:
        """``int8=400@50``: 400 GMAC/s and 50 GB/s for int8 kernels (a datasheet's figures)."""
        try:
            dtype, rest = text.split("=", 1)
            gmacs, gbs = rest.split("@", 1)
            peak = Peak(float(gmacs), ((math.inf, float(gbs)),), "given")
        except ValueError:
            raise ValueError(f"--peak {text!r} is not DTYPE=GMACS@GBS (e.g. int8=400@50)")
        if dtype not in DTYPES or peak.gmacs <= 0 or peak.bandwidth[0][1] <= 0:
            raise ValueError(f"--peak {text!r}: the dtype is one of {', '.join(DTYPES)} and both "
                             "figures are positive")
        return dtype, peak


def profilers(names: tuple[str, ...]) -> list:
    """The targets of ``names``; a target that cannot profile is refused by name."""
    from convdeploy.targets import registry

    found = []
    for name in names:
        target = registry.get(name)
        if not getattr(target, "profiles", False):
            able = [n for n in registry.names() if getattr(registry.get(n), "profiles", False)]
            raise ConvdeployError(f"target {name} has no per-layer profile",
                                  fix=f"profile on {', '.join(able)}")
        missing = target.unavailable()
        if missing:
            raise ConvdeployError(f"target {name} cannot run here: {missing}",
                                  fix="install its runtime or drop it from --targets")
        found.append(target)
    return found


def profile_artifact(artifact, graph_path: Path, target, workdir: Path, *, threads: int,
                     batch: int, runs: int = 50, warmup: int = 10, min_time_s: float = 1.0,
                     peaks: dict[str, Peak] | None = None, model: str = "") -> EfficiencyProfile:
    """One cell: ``artifact`` on ``target`` at ``threads`` and ``batch``; ``graph_path`` is the
    ONNX file the artifact was made from (costs and names come from it)."""
    import onnx

    from convdeploy.latency import time_runs
    from convdeploy.targets.base import RuntimeOptions

    options = RuntimeOptions(threads=threads)
    shape = artifact.input_shape or tuple(_input_shape(graph_path)[1:])
    x = {artifact.input_name: np.random.default_rng(0).random((batch, *shape),
                                                             dtype=np.float32)}
    runnable = target.compile(artifact, workdir, options=options)
    latency = time_runs(runnable, x, warmup=warmup, repeats=runs, min_time_s=min_time_s)
    timeline = target.profile(artifact, x, workdir, options=options, runs=runs, warmup=warmup)
    index = GraphIndex(onnx.load(str(graph_path)), batch=batch)
    measured = peaks_for(target, threads, peaks or {})
    result = analyse(timeline, index, index.costs(), latency_ms=latency["median"],
                     peaks=measured, model=model, precision=artifact.precision,
                     target=target.name, threads=threads, batch=batch)
    notes = list(timeline.notes)
    if latency.get("other_cpu_cores", 0) > 0.2:
        notes.append(f"other processes kept {latency['other_cpu_cores']:.2f} cores busy while "
                     "the latency was timed: an upper bound")
    return EfficiencyProfile(**{**result.__dict__, "warnings": (*result.warnings, *notes)})


def peaks_for(target, threads: int, given: dict[str, Peak], *,
              refresh: bool = False) -> dict[str, Peak]:
    """Per dtype: the given (datasheet) peak, else the one measured and cached here."""
    return {d: given.get(d) or peak_for(target, d, threads, refresh=refresh) for d in DTYPES}


def _input_shape(path: Path) -> list[int]:
    import onnx

    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value or 1 for d in dims]


@dataclass
class ProfileRun:
    profiles: list[EfficiencyProfile] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"profiles": [p.to_dict() for p in self.profiles]}, indent=1,
                          default=_jsonable)


def _jsonable(obj):
    if isinstance(obj, float) and math.isinf(obj):
        return "inf"
    raise TypeError(type(obj))


def profile_model(cfg: DeployConfig, pcfg: ProfileConfig = ProfileConfig()) -> ProfileRun:
    """Export as ``export`` does (float, and the scheme if one is given), then profile each
    artifact on each target of ``cfg.targets``; outputs go to ``cfg.out`` atomically."""
    from convdeploy.files import staged_directory, write_text_atomic
    from convdeploy.pipeline import prepare_run, quantize_and_export

    from .plots import write_plots
    from .report import markdown

    targets = profilers(cfg.targets)
    prep = prepare_run(cfg)
    run = ProfileRun()
    with staged_directory(cfg.out, overwrite=cfg.overwrite) as stage:
        _, artifacts, _ = quantize_and_export(cfg, prep, stage, targets)
        by_name = {a.path.name: a for a in artifacts if a.path is not None}
        for target in targets:
            peaks = peaks_for(target, cfg.measure.threads, dict(pcfg.peaks),
                              refresh=pcfg.refresh_peaks)
            for art in artifacts:
                if art.format not in target.formats or art.details.get(
                        "weight_container") == "int4" or target.check(art):
                    continue
                source = by_name.get(art.details.get("source", ""), art)
                run.profiles.append(profile_artifact(
                    art, source.path, target, stage / "work", threads=cfg.measure.threads,
                    batch=cfg.measure.batch_size, runs=pcfg.runs, warmup=pcfg.warmup,
                    min_time_s=cfg.measure.min_time_s, peaks=peaks,
                    model=prep.loaded.name))
        _remove_tree(stage / "work")
        write_text_atomic(stage / "profile.json", run.to_json())
        write_text_atomic(stage / "profile.md", markdown(run.profiles))
        write_plots(run.profiles, stage)
    return run


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
