"""``run(cfg) -> Report``: the only place that chains the stages.

load model and data -> capture -> (early target checks on the float export) -> calibrate ->
export QDQ -> check -> run every (artifact, target) on the evaluation set -> report.
Everything is written into a staging directory that replaces ``cfg.out`` only on success.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from convdeploy.errors import ConvdeployError
from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.exporters.hls_config import FpgaConfig
from convdeploy.models.datasets import ImageSet, load_images, native_layout
from convdeploy.models.loading import LoadedModel, load_model
from convdeploy.models.spec import Preprocess
from convdeploy.quant.scheme import W8A8
from convdeploy.targets import registry
from convdeploy.targets.base import RuntimeOptions, Target

from . import check, latency
from .config import DataConfig, DeployConfig, ModelSource, effective_ptq
from .files import staged_directory
from .report import Report, environment


def check_data_paths(data: DataConfig, *, named: str = "--{} path",
                     error=ConvdeployError) -> None:
    """Every data path the user named exists, before any work; the message names it as the
    user wrote it (``named``: the CLI's flags by default, ``data.{}: path`` for a spec)."""
    for role in ("calib", "eval", "train"):
        path = getattr(data, role)
        if path and not Path(path).expanduser().exists():
            raise error(f"{named.format(role)} {path} does not exist",
                        fix="give an existing ImageFolder directory or .npz")


def resolve_preprocess(data: DataConfig, loaded: LoadedModel) -> Preprocess:
    """The model's own preprocessing (zoo, .pt2 input size) or the stated default (RGB in
    [0, 1] at the data's native size and channel count), with the user's overrides applied."""
    check_data_paths(data)
    base = loaded.preprocess_hint
    source = data.calib or data.eval or data.train
    layout = native_layout(source) if source and (base is None or data.size is None) else None
    size = data.size or (base.size if base else None) or (layout[0] if layout else None)
    if size is None:
        raise ConvdeployError(f"the input size of {loaded.name} is unknown",
                              fix="pass --size (e.g. --size 224)")
    stated = data.mean or data.std or (base.mean if base else None)
    channels = len(stated) if stated else (layout[1] if layout else 3)
    mean = data.mean or (base.mean if base and len(base.mean) == channels else (0.0,) * channels)
    std = data.std or (base.std if base and len(base.std) == channels else (1.0,) * channels)
    base = base or Preprocess()
    frames = data.frames or base.frames or (layout.frames if layout else None)
    try:  # from the model's own (a video model keeps its frames), the overrides applied
        return replace(base, size=tuple(size), mean=tuple(mean), std=tuple(std),
                       resize=data.resize or base.resize, frames=frames,
                       frame_stride=data.frame_stride or base.frame_stride)
    except ValueError as exc:
        raise ConvdeployError(f"bad preprocessing: {exc}",
                              fix="check --size/--mean/--std/--frames")


def resolve_data(data: DataConfig, loaded: LoadedModel, preprocess: Preprocess, *,
                 progress: bool, calib_from_train: bool = False) -> tuple[ImageSet, ImageSet]:
    """Calibration and evaluation sets; with ``calib_from_train`` (fine-tuning runs) and no
    ``calib``, calibration draws its random subset from the training data."""
    defaults = loaded.spec.default_data() if loaded.spec and loaded.spec.default_data else None
    calib_path = data.calib or (data.train if calib_from_train else None)
    sets = []
    for role, path, index in (("calibration", calib_path, 0), ("evaluation", data.eval, 1)):
        if path:
            sets.append(load_images(path, preprocess, progress=progress,
                                    skip_bad_files=data.skip_bad_files))
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


def resolve_targets(names: tuple[str, ...], fpga: FpgaConfig = FpgaConfig()) -> list[Target]:
    """Reference first (it defines float and simulation); every unavailable target is an error
    before any work starts. A target with settings of its own (``configured``) gets them."""
    ordered = ["reference"] + [n for n in dict.fromkeys(names) if n != "reference"]
    targets = [registry.get(n) for n in ordered]
    targets = [t.configured(fpga) if hasattr(t, "configured") else t for t in targets]
    missing = [f"{t.name}: {t.unavailable()}" for t in targets if t.unavailable()]
    if missing:
        raise ConvdeployError("target(s) cannot run on this machine: " + "; ".join(missing),
                              fix="install the runtime, or drop the target from --targets")
    return targets


def _runs(target: Target, artifact: Artifact) -> bool:
    """Does ``target`` take ``artifact`` at all (its format; float only if it runs float,
    quantized only if it runs quantized models)?"""
    if artifact.quantized:
        return artifact.format in target.formats and getattr(target, "runs_quantized", True)
    return artifact.format in target.formats and getattr(target, "runs_float", True)


def _check_all(targets: list[Target], artifact: Artifact) -> None:
    problems = [f"{t.name}: {r}" for t in targets if _runs(t, artifact)
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
    runnable = target.compile(artifact, workdir, options=RuntimeOptions(
        m.threads, keep_dir=Path(workdir).parent))
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
    if artifact.details.get("weight_container"):
        row["weight_container"] = artifact.details["weight_container"]
    untimed = getattr(target, "latency_not_meaningful", None)
    if untimed:  # an oracle or an emulator: its timings say nothing about a device
        row["latency_ms"] = {"not_measured": untimed}
    else:
        sample = eval_set.normalized(preprocess, 0, m.batch_size)
        row["latency_ms"] = latency.measure(runnable, sample, artifact.input_name,
                                            batch_size=m.batch_size, warmup=m.warmup,
                                            repeats=m.repeats, min_time_s=m.min_time_s)
    row["runtime"] = runnable.details
    row["model_size_bytes"] = artifact.size_bytes
    row["eval_seconds"] = eval_s
    return row, logits


def _check_scheme(targets: list[Target], cfg: DeployConfig) -> None:
    """A scheme a target cannot execute is refused before loading, calibration or training."""
    if cfg.scheme is None:
        return
    problems = [f"{t.name}: {r}" for t in targets for r in t.check_scheme(cfg.scheme)]
    if problems:
        raise ConvdeployError(f"scheme {cfg.scheme.name} cannot run on every target: "
                              + "; ".join(problems),
                              fix="drop that target from --targets, or choose a scheme it runs "
                                  "(e.g. --scheme w8a8)")


def _quantize(cfg: DeployConfig, qm, calib_set: ImageSet, preprocess: Preprocess,
              eval_set: ImageSet, loaded: LoadedModel, timings: dict) -> dict:
    """PTQ (and QAT when configured) of ``qm`` in place; returns the report's method details."""
    import torch

    from convdeploy.quant.ptq import apply_ptq

    ptq = effective_ptq(cfg)
    checkpoint_state = None
    if cfg.qat is not None:
        train_set = _train_set(cfg, loaded, preprocess)
        run_id = _qat_run_id(cfg, loaded, ptq)
        if cfg.qat_checkpoint is not None:
            from convdeploy.quant.qat import load_checkpoint

            checkpoint_state = load_checkpoint(cfg.qat_checkpoint, run_id)
    if checkpoint_state is not None:  # weights come from the checkpoint: skip the slow methods
        from convdeploy.quant.config import PTQMethod

        ptq_run = replace(ptq, methods=tuple(m for m in ptq.methods if m is PTQMethod.CLE))
    else:
        ptq_run = ptq
    batches = [torch.from_numpy(b) for b in calib_set.batches(preprocess, 64)]
    apply_ptq(qm, batches, ptq_run, progress=cfg.progress)
    qm.ptq = ptq
    timings.update({f"ptq:{k}": v for k, v in qm.timings_s.items()})
    details = {"label": qm.label, "ptq": qm.ptq_details}
    if cfg.qat is not None:
        from convdeploy.models.augment import random_crop_flip
        from convdeploy.quant.qat import finetune

        t0 = time.perf_counter()
        holdout = eval_set.subset(min(len(eval_set), QAT_EVAL_SAMPLES), seed=cfg.data.seed)
        hx = torch.from_numpy(holdout.normalized(preprocess))

        def accuracy(model) -> float:
            logits = torch.cat([model.simulate(hx[i:i + 500]) for i in range(0, len(hx), 500)])
            return float((logits.argmax(1).numpy() == holdout.labels).mean())

        x = torch.from_numpy(train_set.normalized(preprocess))
        y = torch.from_numpy(train_set.labels.astype(np.int64))
        history = finetune(qm, x, y, cfg.qat, augment=random_crop_flip if x.dim() == 4 else None,
                           evaluate=accuracy if holdout.labels is not None else None,
                           checkpoint=cfg.qat_checkpoint, run_id=run_id, progress=cfg.progress)
        timings["qat"] = time.perf_counter() - t0
        details.update(label=qm.label, qat={**asdict(cfg.qat), "history": history,
                                            "train": train_set.describe(),
                                            "eval_during_training": len(holdout)})
    return details


QAT_EVAL_SAMPLES = 2000  # held-out images scored after every QAT epoch (the report scores all)


def _train_set(cfg: DeployConfig, loaded: LoadedModel, preprocess: Preprocess) -> ImageSet:
    if cfg.data.train:
        data = load_images(cfg.data.train, preprocess, progress=cfg.progress,
                           skip_bad_files=cfg.data.skip_bad_files)
    elif loaded.spec and loaded.spec.default_data:
        data = loaded.spec.default_data()[0]
    else:
        raise ConvdeployError(f"no training data for quantization-aware fine-tuning of "
                              f"{loaded.name}", fix="pass --train DIR (an ImageFolder directory)")
    if data.labels is None or len(data) == 0:
        raise ConvdeployError(f"training data {data.source} has no labels",
                              fix="use an ImageFolder directory (one folder per class)")
    return data


def _qat_run_id(cfg: DeployConfig, loaded: LoadedModel, ptq) -> str:
    """What a checkpoint must match to be resumed: model, weights, scheme, methods, settings."""
    import hashlib

    text = repr((loaded.name, loaded.weights, cfg.scheme, ptq, cfg.qat, cfg.data.train,
                 cfg.data.calib, cfg.data.calib_size, cfg.data.seed))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _export_quantized(cfg: DeployConfig, qm, example, stage: Path,
                      targets: list[Target]) -> list[Artifact]:
    """The QDQ model; for 4-bit weights also the packed-INT4 form (its size is reported, and it
    runs wherever a target accepts it; the int8-container form is the default: it runs integer
    kernels)."""
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.exporters.qdq import WeightContainer

    main = OnnxExporter(quantized=True, example=example, precision=qm.label).export(qm, stage)
    _check_all([t for t in targets if t.name != "int-reference"], main)
    artifacts = [main, *_tflite(targets, main, stage)]
    if cfg.scheme.min_bits == 4 and cfg.scheme.weights.bits == 4:
        packed = OnnxExporter(quantized=True, example=example, precision=qm.label + "+int4-file",
                              container=WeightContainer.INT4).export(qm, stage)
        artifacts.append(packed)
    return artifacts


def _tflite(targets: list[Target], source: Artifact, stage: Path) -> list[Artifact]:
    """The ``.tflite`` of ``source`` when a target runs TFLite (checked before it is used)."""
    if not any(ArtifactFormat.TFLITE in t.formats for t in targets):
        return []
    from convdeploy.exporters.tflite_export import TfliteExporter

    artifact = TfliteExporter().export(source, stage)
    _check_all(targets, artifact)
    return [artifact]


def _check_integer_ops(targets: list[Target], cfg: DeployConfig, float_art: Artifact) -> None:
    """The targets that lower the graph (int-reference, fpga-hls, gpu-triton) run quantized
    files only, but the ops they lower are the float model's: asked for by name, they name an op
    or layer the lowering cannot take (e.g. a grouped 3x3x3 Conv3d) before calibration."""
    from convdeploy.targets import registry

    asked = [t.name for t in targets if getattr(t, "lowers_graph", False)
             and t.name in cfg.targets]
    if not asked or float_art.quantized:
        return
    reasons = registry.get("int-reference").check_ops(float_art)
    if reasons:
        raise ConvdeployError(f"{', '.join(asked)} cannot run {float_art.name}: "
                              + "; ".join(reasons),
                              fix=f"drop {', '.join(asked)} from --targets, or change that layer")


def _int_reference_note(targets: list[Target], cfg: DeployConfig,
                        artifacts: list[Artifact]) -> str | None:
    """The integer reference joins every quantized run (each row's LSB distance to it); when
    it was not asked for and cannot lower the model, it is dropped and the report says why."""
    ref = next((t for t in targets if t.name == "int-reference"), None)
    quantized = next((a for a in artifacts if a.quantized and a.format is ArtifactFormat.ONNX),
                     None)
    if ref is None or quantized is None:
        return None
    reasons = ref.check(quantized)
    if not reasons:
        return None
    if "int-reference" in cfg.targets:
        raise ConvdeployError(f"int-reference cannot run {quantized.name}: " + "; ".join(reasons),
                              fix="drop int-reference from --targets, or change that layer")
    targets.remove(ref)
    return "int-reference skipped: " + "; ".join(reasons)


@dataclass
class Prepared:
    """What every stage after loading needs: the model, its data and the captured graphs.

    ``float_qm`` is the float reference with its own graph: PTQ methods (CLE, AdaRound, bias
    correction) and QAT change the quantized model's weights, never the float model it is
    measured against. ``qm`` is None for a float-only run."""

    loaded: LoadedModel
    preprocess: Preprocess
    calib_set: ImageSet
    eval_set: ImageSet
    example: object  # torch.Tensor: two evaluation samples, the export's example input
    gm: object
    float_qm: object
    qm: object | None
    timings: dict[str, float] = field(default_factory=dict)
    conv3d_as_2d: tuple[str, ...] = ()  # the Conv3d layers exported in their 2-D form


def capture_model(loaded: LoadedModel, source: ModelSource, example):
    """The captured graph of ``loaded`` in the form ``source`` asks for (``TwoD``: the graph,
    the Conv3d layers rewritten to 2-D and the BatchNorms folded for that; both lists are
    empty for the 5-D form)."""
    from convdeploy.quant.conv3d_form import TwoD, conv3d_as_2d
    from convdeploy.quant.graph import capture

    gm = capture(loaded.model, example)
    if not source.conv3d_as_2d:
        return TwoD(gm, [], [])
    two_d = conv3d_as_2d(gm, example)
    if not two_d.convs:
        raise ConvdeployError(f"{loaded.name} has no Conv3d: --conv3d-as-2d does not apply",
                              fix="drop --conv3d-as-2d (only 5-D convolutions are rewritten)")
    return two_d


def prepare_run(cfg: DeployConfig) -> Prepared:
    """Load the model and data, capture the graph and insert quantizers (no calibration yet)."""
    import torch

    from convdeploy.quant.ptq import prepare

    t0 = time.perf_counter()
    loaded = load_model(cfg.model.ref, cfg.model.weights)
    preprocess = resolve_preprocess(cfg.data, loaded)
    calib_set, eval_set = resolve_data(cfg.data, loaded, preprocess, progress=cfg.progress,
                                       calib_from_train=cfg.qat is not None)
    _check_shape(calib_set, preprocess)
    timings = {"load": time.perf_counter() - t0}
    example = torch.from_numpy(eval_set.normalized(preprocess, 0, 2))
    example = example.repeat(2, *[1] * (example.dim() - 1))[:2]  # a batch of 1 fixes the batch
    t0 = time.perf_counter()
    gm, rewritten, folded = capture_model(loaded, cfg.model, example)
    float_qm = prepare(gm, cfg.scheme or W8A8)
    qm = prepare(gm, cfg.scheme) if cfg.scheme is not None else None
    for prepared in (float_qm, qm):
        if prepared is not None:  # the BatchNorms the 2-D rewrite folded first
            prepared.folded_batchnorms = [*folded, *prepared.folded_batchnorms]
    timings["capture"] = time.perf_counter() - t0
    return Prepared(loaded, preprocess, calib_set, eval_set, example, gm, float_qm, qm, timings,
                    tuple(rewritten))


def quantize_and_export(cfg: DeployConfig, prep: Prepared, stage: Path,
                        targets: list[Target]) -> tuple[list[Artifact], list[Artifact], dict | None]:
    """Export float, quantize (PTQ, QAT) and export the quantized model into ``stage``; each
    target in ``targets`` is checked before the long parts (``Target.check``). Returns the
    torch reference artifacts (float, simulation), the exported artifacts and the method
    details of the quantized model (None for a float-only run)."""
    from convdeploy.exporters.onnx_export import OnnxExporter

    timings = prep.timings
    t0 = time.perf_counter()
    artifacts = [OnnxExporter(quantized=False, example=prep.example).export(prep.float_qm,
                                                                             stage)]
    _check_all(targets, artifacts[0])  # before the long part: calibration and evaluation
    _check_integer_ops(targets, cfg, artifacts[0])
    artifacts += _tflite(targets, artifacts[0], stage)
    timings["export_float"] = time.perf_counter() - t0
    refs_art = [_torch_artifact(prep.float_qm, "float", prep.preprocess, False)]
    method_details = None
    if prep.qm is not None:
        qm = prep.qm
        method_details = _quantize(cfg, qm, prep.calib_set, prep.preprocess, prep.eval_set,
                                   prep.loaded, timings)
        t0 = time.perf_counter()
        artifacts += _export_quantized(cfg, qm, prep.example, stage, targets)
        timings["export_quantized"] = time.perf_counter() - t0
        refs_art.append(_torch_artifact(qm, qm.label, prep.preprocess, True))
    return refs_art, artifacts, method_details


def run(cfg: DeployConfig) -> Report:
    """Export, quantize, run on every target and report; outputs land in ``cfg.out``."""
    wanted = cfg.targets + (("int-reference",) if cfg.scheme is not None else ())
    targets = resolve_targets(wanted, cfg.fpga)
    _check_scheme(targets, cfg)
    prep = prepare_run(cfg)
    with staged_directory(cfg.out, overwrite=cfg.overwrite) as stage:
        refs_art, artifacts, method_details = quantize_and_export(cfg, prep, stage, targets)
        int_ref_note = (_int_reference_note(targets, cfg, artifacts)
                        if prep.qm is not None else None)
        report = _measure_all(cfg, targets, refs_art + artifacts, stage, prep.eval_set,
                              prep.preprocess)
        report.model_info = _model_info(prep.loaded, prep.qm or prep.float_qm, prep.gm)
        if prep.conv3d_as_2d:
            report.model_info["conv3d_as_2d"] = list(prep.conv3d_as_2d)
        report.data = {"calib": prep.calib_set.describe(), "eval": prep.eval_set.describe(),
                       "preprocess": prep.preprocess.to_dict()}
        report.scheme = ({**cfg.scheme.to_dict(), **method_details}
                         if prep.qm is not None else None)
        if prep.qm is not None and int_ref_note:
            report.scheme["int_reference"] = int_ref_note
        report.timings_s = prep.timings
        report.artifacts = [{"name": a.name, "path": a.path.name, "precision": a.precision,
                             "size_bytes": a.size_bytes, **a.details} for a in artifacts]
        report.write(stage)
    return report


def _measure_all(cfg: DeployConfig, targets: list[Target], artifacts: list[Artifact],
                 stage: Path, eval_set: ImageSet, preprocess: Preprocess) -> Report:
    refs: dict[str, np.ndarray] = {}
    rows, outputs = [], []
    for target in targets:
        for artifact in artifacts:
            if not _runs(target, artifact):
                continue
            reasons = target.check(artifact) if artifact.details.get("weight_container") == \
                "int4" else []
            if reasons:  # the packed-INT4 file is optional: a target may not take it
                artifact.details.setdefault("not_run_on", {})[target.name] = "; ".join(reasons)
                continue
            row, logits = evaluate_on_target(target, artifact, cfg, stage / "work", eval_set,
                                             preprocess, refs)
            rows.append(row)
            outputs.append((artifact, logits))
    shutil.rmtree(stage / "work", ignore_errors=True)
    _compare_with_int_reference(rows, outputs)
    float_row = rows[0]
    return Report(model=cfg.model.ref, float={
        "accuracy": float_row["accuracy"], "accuracy_ci95": float_row["accuracy_ci95"],
        "target": "reference"}, results=rows, environment=environment(cfg.measure.threads))


def _compare_with_int_reference(rows: list[dict], outputs: list) -> None:
    """Every quantized row gains its distance to the integer reference: the largest output
    difference in LSBs (0 = bit-exact) and the share of output values equal to it."""
    ref = next((logits for row, (a, logits) in zip(rows, outputs)
                if row["target"] == "int-reference"), None)
    for row, (artifact, logits) in zip(rows, outputs):
        if not artifact.quantized:
            continue
        if ref is None or not artifact.output_scale:
            row["max_lsb_vs_int_reference"] = row["bit_exact_fraction"] = None
            continue
        steps = np.rint(np.abs(logits.astype(np.float64) - ref) / artifact.output_scale)
        row["max_lsb_vs_int_reference"] = int(steps.max())
        row["bit_exact_fraction"] = float((steps == 0).mean())


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
