"""``run(cfg) -> Report``: the only place that chains the stages.

load model and data -> capture -> (early target checks on the float export) -> calibrate ->
export QDQ -> check -> run every (artifact, target) on the evaluation set -> report.
Everything is written into a staging directory that replaces ``cfg.out`` only on success.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from convdeploy.errors import ConvdeployError
from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.models.datasets import ImageSet, load_images, native_size
from convdeploy.models.loading import LoadedModel, load_model
from convdeploy.models.spec import Preprocess
from convdeploy.quant.scheme import W8A8
from convdeploy.targets import registry
from convdeploy.targets.base import RuntimeOptions, Target

from . import check, latency
from .config import DataConfig, DeployConfig
from .files import staged_directory
from .report import Report, environment


def resolve_preprocess(data: DataConfig, loaded: LoadedModel) -> Preprocess:
    """The model's own preprocessing (zoo, .pt2 input size) or the stated default (RGB in
    [0, 1] at the data's native size), with the user's overrides applied."""
    base = loaded.preprocess_hint
    size = data.size or (base.size if base else None)
    if size is None:
        source = data.calib or data.eval
        size = native_size(source) if source else None
    if size is None:
        raise ConvdeployError(f"the input size of {loaded.name} is unknown",
                              fix="pass --size (e.g. --size 224)")
    channels = len(data.mean or data.std or (base.mean if base else (0.0,) * 3))
    mean = data.mean or (base.mean if base and len(base.mean) == channels else (0.0,) * channels)
    std = data.std or (base.std if base and len(base.std) == channels else (1.0,) * channels)
    try:
        return Preprocess(size=tuple(size), mean=tuple(mean), std=tuple(std),
                          resize=data.resize if data.resize else (base.resize if base else None))
    except ValueError as exc:
        raise ConvdeployError(f"bad preprocessing: {exc}", fix="check --size/--mean/--std")


def resolve_data(data: DataConfig, loaded: LoadedModel, preprocess: Preprocess, *,
                 progress: bool) -> tuple[ImageSet, ImageSet]:
    defaults = loaded.spec.default_data() if loaded.spec and loaded.spec.default_data else None
    sets = []
    for role, path, index in (("calibration", data.calib, 0), ("evaluation", data.eval, 1)):
        if path:
            sets.append(load_images(path, preprocess, progress=progress))
        elif defaults:
            sets.append(defaults[index])
        else:
            flag = "--calib" if index == 0 else "--eval"
            raise ConvdeployError(f"no {role} data for {loaded.name}",
                                  fix=f"pass {flag} DIR (an ImageFolder directory) or a .npz")
    calib, evaluation = sets
    if len(calib) == 0 or len(evaluation) == 0:
        raise ConvdeployError("a data set is empty", fix="check the --calib/--eval paths")
    return (calib.subset(data.calib_size, seed=data.seed),
            evaluation.subset(data.eval_limit, seed=data.seed))


def resolve_targets(names: tuple[str, ...]) -> list[Target]:
    """Reference first (it defines float and simulation); every unavailable target is an error
    before any work starts."""
    ordered = ["reference"] + [n for n in dict.fromkeys(names) if n != "reference"]
    targets = [registry.get(n) for n in ordered]
    missing = [f"{t.name}: {t.unavailable()}" for t in targets if t.unavailable()]
    if missing:
        raise ConvdeployError("target(s) cannot run on this machine: " + "; ".join(missing),
                              fix="install the runtime, or drop the target from --targets")
    return targets


def _check_all(targets: list[Target], artifact: Artifact) -> None:
    problems = [f"{t.name}: {r}" for t in targets if artifact.format in t.formats
                for r in t.check(artifact)]
    if problems:
        raise ConvdeployError(f"{artifact.name} cannot run on every target: "
                              + "; ".join(problems),
                              fix="drop that target from --targets, or change the model's op")


def _torch_artifact(qm, precision: str, preprocess: Preprocess, quantized: bool) -> Artifact:
    return Artifact(name=f"torch.{precision}", format=ArtifactFormat.TORCH, precision=precision,
                    input_shape=preprocess.input_shape, module=qm,
                    output_scale=qm.output_scale() if quantized else None)


def evaluate_on_target(target: Target, artifact: Artifact, cfg: DeployConfig, workdir: Path,
                       eval_set: ImageSet, preprocess: Preprocess,
                       refs: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """Compile ``artifact`` on ``target``, run the evaluation set, compare with ``refs``
    ("float", and "sim" for quantized artifacts) and time it: one report row and the logits."""
    m = cfg.measure
    t0 = time.perf_counter()
    runnable = target.compile(artifact, workdir, options=RuntimeOptions(m.threads))
    logits = check.run_dataset(runnable, eval_set, preprocess, batch_size=m.eval_batch_size,
                               input_name=artifact.input_name, output_name=artifact.output_name,
                               label=f"{target.name} {artifact.precision}",
                               progress=cfg.progress)
    eval_s = time.perf_counter() - t0
    if target.name == "reference":  # the reference rows define float and simulation
        refs["sim" if artifact.quantized else "float"] = logits
    row = {"target": target.name, "scheme": artifact.precision,
           "artifact": str(artifact.path.name) if artifact.path else artifact.name}
    row.update(check.compare(
        logits, float_logits=refs.get("float", logits), sim_logits=refs.get("sim"),
        labels=eval_set.labels, output_scale=artifact.output_scale))
    sample = eval_set.normalized(preprocess, 0, m.batch_size)
    row["latency_ms"] = latency.measure(runnable, sample, artifact.input_name,
                                        batch_size=m.batch_size, warmup=m.warmup,
                                        repeats=m.repeats)
    row["runtime"] = runnable.details
    row["model_size_bytes"] = artifact.size_bytes
    row["eval_seconds"] = eval_s
    return row, logits


def run(cfg: DeployConfig) -> Report:
    """Export, quantize, run on every target and report; outputs land in ``cfg.out``."""
    import torch

    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant.graph import capture
    from convdeploy.quant.ptq import calibrate, prepare

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    targets = resolve_targets(cfg.targets)
    loaded = load_model(cfg.model.ref, cfg.model.weights)
    preprocess = resolve_preprocess(cfg.data, loaded)
    calib_set, eval_set = resolve_data(cfg.data, loaded, preprocess, progress=cfg.progress)
    _check_shape(calib_set, preprocess)
    timings["load"] = time.perf_counter() - t0
    example = torch.from_numpy(eval_set.normalized(preprocess, 0, 2))
    t0 = time.perf_counter()
    gm = capture(loaded.model, example)
    qm = prepare(gm, cfg.scheme or W8A8)
    timings["capture"] = time.perf_counter() - t0
    with staged_directory(cfg.out, overwrite=cfg.overwrite) as stage:
        t0 = time.perf_counter()
        artifacts = [OnnxExporter(quantized=False, example=example).export(qm, stage)]
        _check_all(targets, artifacts[0])  # before the long part: calibration and evaluation
        timings["export_float"] = time.perf_counter() - t0
        refs_art = [_torch_artifact(qm, "float", preprocess, False)]
        if cfg.scheme is not None:
            t0 = time.perf_counter()
            batches = [torch.from_numpy(b) for b in calib_set.batches(preprocess, 64)]
            calibrate(qm, batches, progress=cfg.progress)
            timings["calibrate"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            artifacts.append(OnnxExporter(quantized=True, example=example).export(qm, stage))
            _check_all(targets, artifacts[1])
            timings["export_quantized"] = time.perf_counter() - t0
            refs_art.append(_torch_artifact(qm, cfg.scheme.name, preprocess, True))
        report = _measure_all(cfg, targets, refs_art + artifacts, stage, eval_set, preprocess)
        report.model_info = _model_info(loaded, qm, gm)
        report.data = {"calib": calib_set.describe(), "eval": eval_set.describe(),
                       "preprocess": preprocess.to_dict()}
        report.scheme = cfg.scheme.to_dict() if cfg.scheme else None
        report.timings_s = timings
        report.artifacts = [{"name": a.name, "path": a.path.name, "precision": a.precision,
                             "size_bytes": a.size_bytes, **a.details} for a in artifacts]
        report.write(stage)
    return report


def _measure_all(cfg: DeployConfig, targets: list[Target], artifacts: list[Artifact],
                 stage: Path, eval_set: ImageSet, preprocess: Preprocess) -> Report:
    refs: dict[str, np.ndarray] = {}
    rows = []
    for target in targets:
        for artifact in artifacts:
            if artifact.format not in target.formats:
                continue
            row, _ = evaluate_on_target(target, artifact, cfg, stage / "work", eval_set,
                                        preprocess, refs)
            rows.append(row)
    shutil.rmtree(stage / "work", ignore_errors=True)
    float_row = rows[0]
    return Report(model=cfg.model.ref, float={
        "accuracy": float_row["accuracy"], "accuracy_ci95": float_row["accuracy_ci95"],
        "target": "reference"}, results=rows, environment=environment(cfg.measure.threads))


def _check_shape(data: ImageSet, preprocess: Preprocess) -> None:
    if data.preprocessed and tuple(data.images.shape[1:]) != preprocess.input_shape:
        raise ConvdeployError(
            f"data of shape {tuple(data.images.shape[1:])} does not match the model input "
            f"{preprocess.input_shape}", fix="pass data at the model's input size")


def _model_info(loaded: LoadedModel, qm, gm) -> dict:
    params = sum(p.numel() for p in gm.parameters())
    kinds: dict[str, int] = {}
    for q in qm.quantizers.values():
        kinds[q.kind.value] = kinds.get(q.kind.value, 0) + 1
    return {"source": loaded.source, "weights": loaded.weights, "parameters": int(params),
            "folded_batchnorms": len(qm.folded_batchnorms), "quantizers": kinds}
