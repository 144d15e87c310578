"""The audit's units of work and the functions that run them (in any process or Ray task).

- ``QuantizeUnit`` (model, scheme): load, calibrate/PTQ, export every artifact once into
  ``DIR/artifacts/<key>/``; the torch float and simulation logits of the evaluation set.
- ``AccuracyUnit`` (model, scheme, target): the evaluation set's logits on one target, shared
  by every thread count and batch size of that pair.
- ``LatencyUnit`` (model, scheme, target, threads, batch size): one timed cell, run alone.

Each unit's ``key`` hashes its configuration with the fingerprints of the model, weights, data
and environment, so a finished unit is reused only when nothing it depends on changed. The run
functions are plain top-level functions of picklable arguments: the local process pool and Ray
call the same code, and every call sets its thread count explicitly (Ray and OpenMP otherwise
choose one).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.config import DataConfig, DeployConfig, MeasureConfig, ModelSource

from .spec import SchemeEntry

def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class QuantizeUnit:
    model: ModelSource
    scheme: SchemeEntry
    data: DataConfig
    tflite: bool  # some target of the sweep runs .tflite files
    eval_batch_size: int
    fingerprint: str  # model, weights, data and environment (see fingerprint.py)

    kind = "quantize"

    @property
    def key(self) -> str:
        return _digest(["quantize", asdict(self.model), self.scheme.label, repr(self.scheme),
                        asdict(self.data), self.tflite, self.fingerprint])

    def describe(self) -> str:
        return f"quantize {self.model.label} {self.scheme.label}"


@dataclass(frozen=True)
class AccuracyUnit:
    source: QuantizeUnit
    target: str
    eval_batch_size: int

    kind = "accuracy"

    @property
    def key(self) -> str:
        return _digest(["accuracy", self.source.key, self.target, self.eval_batch_size])

    def describe(self) -> str:
        return f"accuracy {self.source.model.label} {self.source.scheme.label} on {self.target}"


@dataclass(frozen=True)
class LatencyUnit:
    source: QuantizeUnit
    target: str
    threads: int
    batch_size: int
    warmup: int
    repeats: int
    min_time_s: float
    profile: bool = False  # also the per-layer efficiency profile (convdeploy.efficiency)

    kind = "latency"

    @property
    def key(self) -> str:
        return _digest(["latency", self.source.key, self.target, self.threads, self.batch_size,
                        self.warmup, self.repeats, self.min_time_s,
                        *(["profile"] if self.profile else [])])

    def describe(self) -> str:
        return (f"latency {self.source.model.label} {self.source.scheme.label} on {self.target}, "
                f"{self.threads} thread(s), batch {self.batch_size}")


def set_threads(threads: int) -> None:
    """Pin this process's math libraries to ``threads`` (Ray sets OMP_NUM_THREADS to the task's
    CPU count; a pool worker inherits whatever the parent had)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _deploy_config(unit: QuantizeUnit, out: Path) -> DeployConfig:
    return DeployConfig(model=unit.model, data=unit.data, scheme=unit.scheme.scheme,
                        ptq=unit.scheme.ptq, out=out, progress=False,
                        measure=MeasureConfig(eval_batch_size=unit.eval_batch_size, threads=1))


def run_quantize(unit: QuantizeUnit, artifacts_dir: str, threads: int = 1) -> dict:
    """Quantize and export once; returns the artifacts and the reference logits."""
    from convdeploy import check
    from convdeploy.files import staged_directory
    from convdeploy.pipeline import prepare_run, quantize_and_export
    from convdeploy.targets.reference import TorchRunnable

    set_threads(threads)
    t0 = time.perf_counter()
    out = Path(artifacts_dir) / unit.key
    cfg = _deploy_config(unit, out)
    prep = prepare_run(cfg)
    tflite_error = None
    with staged_directory(out, overwrite=True) as stage:
        refs, artifacts, details = quantize_and_export(cfg, prep, stage, [])
        # the sweep's artifact: the float file, or the quantized one in its default container
        main = [a for a in artifacts if a.quantized == (prep.qm is not None)
                and a.details.get("weight_container") != "int4"]
        if unit.tflite:
            from convdeploy.exporters.tflite_export import TfliteExporter

            try:
                main.append(TfliteExporter().export(main[0], stage))
            except Exception as exc:  # noqa: BLE001 - recorded: the LiteRT cells fail with it
                tflite_error = f"the .tflite writer cannot write this model: {exc}"
    logits = {}
    for art in refs:  # torch float and simulation: the references every target is held to
        runnable = TorchRunnable(art.module, art.quantized, "output", threads)
        logits["sim" if art.quantized else "float"] = check.run_dataset(
            runnable, prep.eval_set, prep.preprocess, batch_size=unit.eval_batch_size,
            input_name="input", output_name="output", progress=False)
    arrays = {"float": logits["float"]}
    if "sim" in logits:
        arrays["sim"] = logits["sim"]
    if prep.eval_set.labels is not None:
        arrays["labels"] = prep.eval_set.labels
    return {
        "artifacts": [_artifact_dict(a) for a in main],
        "tflite_error": tflite_error,
        "preprocess": prep.preprocess.to_dict(),
        "data": {"calib": prep.calib_set.describe(), "eval": prep.eval_set.describe()},
        "classes": prep.eval_set.classes,
        "method_details": _jsonable(details),
        "parameters": int(sum(p.numel() for p in prep.gm.parameters())),
        "seconds": time.perf_counter() - t0,
        "timings_s": prep.timings,
        "arrays": arrays,
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str)) if obj is not None else None


def _artifact_dict(art) -> dict:
    return {"name": art.name, "format": art.format.value, "precision": art.precision,
            "file": art.path.name, "input_name": art.input_name, "output_name": art.output_name,
            "input_shape": list(art.input_shape), "output_scale": art.output_scale,
            "size_bytes": art.size_bytes, "details": _jsonable(art.details)}


def artifact_for(quantized: dict, target_formats: tuple, artifacts_dir: str, key: str,
                 scheme) -> Any:
    """The artifact of a quantize result that a target with ``target_formats`` runs."""
    from convdeploy.exporters.artifact import Artifact, ArtifactFormat

    for fmt in target_formats:
        for a in quantized["artifacts"]:
            if a["format"] == fmt.value:
                return Artifact(name=a["name"], format=ArtifactFormat(a["format"]),
                                precision=a["precision"],
                                path=Path(artifacts_dir) / key / a["file"],
                                input_name=a["input_name"], output_name=a["output_name"],
                                input_shape=tuple(a["input_shape"]),
                                output_scale=a["output_scale"], details=a["details"],
                                scheme=scheme)
    return None


def _eval_set(unit: QuantizeUnit, quantized: dict):
    """The evaluation set exactly as the quantize unit used it (same preprocessing, subset)."""
    from convdeploy.models.loading import load_model
    from convdeploy.models.spec import Preprocess
    from convdeploy.pipeline import resolve_data

    pre = Preprocess.from_dict(quantized["preprocess"])
    loaded = load_model(unit.model.ref, unit.model.weights)
    _, eval_set = resolve_data(unit.data, loaded, pre, progress=False)
    return eval_set, pre


@contextmanager
def _compiled(unit, target, art, artifacts_dir: str, threads: int):
    """The target's runnable of ``art`` with ``threads``; its scratch folder removed after."""
    from convdeploy.targets.base import RuntimeOptions

    workdir = Path(artifacts_dir) / unit.source.key / f"work-{unit.target}-{os.getpid()}"
    try:
        yield target.compile(art, workdir, options=RuntimeOptions(threads))
    finally:
        _remove(workdir)


def _target_and_artifact(unit, quantized: dict, artifacts_dir: str):
    from convdeploy.targets import registry

    target = registry.get(unit.target)
    return target, artifact_for(quantized, target.formats, artifacts_dir, unit.source.key,
                                unit.source.scheme.scheme)


def run_accuracy(unit: AccuracyUnit, quantized: dict, artifacts_dir: str,
                 threads: int = 1) -> dict:
    """Logits of the evaluation set on one target (its check first: a refusal is the result)."""
    from convdeploy import check

    set_threads(threads)
    target, art = _target_and_artifact(unit, quantized, artifacts_dir)
    if art is None:
        reason = quantized.get("tflite_error") or f"no artifact in a format {unit.target} runs"
        return {"status": "failed", "reason": reason}
    reasons = target.check(art)
    if reasons:
        return {"status": "failed", "reason": "; ".join(reasons)}
    eval_set, pre = _eval_set(unit.source, quantized)
    t0 = time.perf_counter()
    with _compiled(unit, target, art, artifacts_dir, threads) as runnable:
        logits = check.run_dataset(runnable, eval_set, pre, batch_size=unit.eval_batch_size,
                                   input_name=art.input_name, output_name=art.output_name,
                                   progress=False)
    return {"status": "ok", "artifact": art.path.name, "model_size_bytes": art.size_bytes,
            "output_scale": art.output_scale, "runtime": _jsonable(runnable.details),
            "eval_seconds": time.perf_counter() - t0, "arrays": {"logits": logits}}


def run_latency(unit: LatencyUnit, quantized: dict, artifacts_dir: str) -> dict:
    """Median/p90 latency of one cell: compile with the cell's threads, warm up, time."""
    from convdeploy import latency

    set_threads(unit.threads)
    target, art = _target_and_artifact(unit, quantized, artifacts_dir)
    eval_set, pre = _eval_set(unit.source, quantized)
    sample = eval_set.normalized(pre, 0, unit.batch_size)
    x = np.ascontiguousarray(np.resize(sample, (unit.batch_size, *sample.shape[1:])),
                             dtype=np.float32)
    with _compiled(unit, target, art, artifacts_dir, unit.threads) as runnable:
        timing = latency.time_runs(runnable, {art.input_name: x}, warmup=unit.warmup,
                                   repeats=unit.repeats, min_time_s=unit.min_time_s)
    extra = {}
    if unit.profile:
        extra["efficiency"] = _profile(unit, target, art, {art.input_name: x}, timing,
                                       artifacts_dir)
    return {"status": "ok", "latency_ms": timing, **extra,
            "per_image_ms": timing["median"] / unit.batch_size,
            "node": socket.gethostname(), "pid": os.getpid(),
            "threads_env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS",)},
            "torch_threads": _torch_threads()}


def _profile(unit: LatencyUnit, target, art, inputs: dict, timing: dict,
             artifacts_dir: str) -> dict:
    """The cell's per-layer view: the runtime's kernel shares applied to the latency just
    measured (never a second timing), costs from the ONNX file the artifact came from."""
    import onnx

    from convdeploy.efficiency.analysis import analyse
    from convdeploy.efficiency.costs import GraphIndex
    from convdeploy.efficiency.profile import peaks_for
    from convdeploy.targets.base import RuntimeOptions

    workdir = Path(artifacts_dir) / unit.source.key / f"profile-{unit.target}-{os.getpid()}"
    try:
        timeline = target.profile(art, inputs, workdir, options=RuntimeOptions(unit.threads),
                                  runs=unit.repeats, warmup=unit.warmup)
    finally:
        _remove(workdir)
    source = art.path.with_name(art.details.get("source", art.path.name))
    index = GraphIndex(onnx.load(str(source)), batch=unit.batch_size)
    result = analyse(timeline, index, index.costs(), latency_ms=timing["median"],
                     peaks=peaks_for(target, unit.threads, {}), model=unit.source.model.label,
                     precision=unit.source.scheme.label, target=unit.target,
                     threads=unit.threads, batch=unit.batch_size)
    return result.to_dict()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
