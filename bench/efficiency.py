"""Benchmark: where the time goes, per layer, on the CPU and mobile runtimes; and what the exact
data-movement rewrite (exporters/codes_rewrite.py) saves.

ResNet-20, ResNet-56 and MobileNetV2 (CIFAR-10; W8A8 from 512 calibration images, and float) on
cpu-ort, cpu-openvino and mobile-litert at 1 and 2 threads, batch 1 and 32: per-layer tables, the
model's efficiency gap and waterline (``convdeploy.efficiency``). Then the rewrite, on and off,
on cpu-ort and cpu-openvino: latency medians of alternating >= 1 s windows (A B A B ...) in one
process, at batch 1 and 32, and the outputs of both on 256 test images compared bit for bit.
Writes ``bench/results/efficiency.json`` and the plots in ``bench/results/efficiency/``.

    python bench/efficiency.py [--models resnet20-cifar10,...] [--threads 1,2]

Run it alone on the machine: every timing records the CPU time other processes used. Skips
(exit 0, with a message) without ../shared.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"
RESULTS = ROOT / "results"
WEIGHTS = {"resnet20-cifar10": SHARED / "models/resnet20-cifar10.th",
           "resnet56-cifar10": SHARED / "models/resnet56-cifar10.th",
           "mobilenetv2-cifar10": Path.home() / ".cache/convdeploy/mobilenetv2-cifar10.pt"}
TARGETS = ("cpu-ort", "cpu-openvino", "mobile-litert")
REWRITE_TARGETS = ("cpu-ort", "cpu-openvino")


def export(model: str, stage: Path):
    """float and W8A8 ONNX and .tflite files of ``model`` into ``stage``."""
    from convdeploy.config import DataConfig, DeployConfig, MeasureConfig, ModelSource
    from convdeploy.pipeline import prepare_run, quantize_and_export
    from convdeploy.quant.scheme import W8A8
    from convdeploy.targets import registry

    cfg = DeployConfig(model=ModelSource(model, str(WEIGHTS[model])),
                       data=DataConfig(calib=str(SHARED / "data/cifar10/train-subset"),
                                       eval=str(SHARED / "data/cifar10/test"), eval_limit=256,
                                       calib_size=512),
                       scheme=W8A8, targets=TARGETS, out=stage, progress=False,
                       measure=MeasureConfig(threads=1))
    prep = prepare_run(cfg)
    _, artifacts, _ = quantize_and_export(cfg, prep, stage, [registry.get(t) for t in TARGETS])
    x = prep.eval_set.normalized(prep.preprocess, 0, 256).astype(np.float32)
    return [a for a in artifacts if a.details.get("weight_container") != "int4"], x


def profiles(model: str, artifacts, threads: list[int], batches: list[int],
             work: Path) -> list:
    from convdeploy.efficiency.profile import profile_artifact
    from convdeploy.targets import registry

    by_name = {a.path.name: a for a in artifacts}
    out = []
    for name in TARGETS:
        target = registry.get(name)
        for art in artifacts:
            if art.format not in target.formats:
                continue
            source = by_name.get(art.details.get("source", ""), art)
            for t in threads:
                for b in batches:
                    p = profile_artifact(art, source.path, target, work, threads=t, batch=b,
                                         runs=200 if b == 1 else 50,
                                         warmup=20 if b == 1 else 5, min_time_s=2.0,
                                         model=model)
                    print(f"  {name} {art.precision} {t}t b{b}: {p.latency_ms:.3f} ms, "
                          f"waterline {p.waterline_ms:.3f}, efficiency "
                          f"{p.model_efficiency:.0%}, attributed "
                          f"{p.attributed_ms / p.latency_ms:.0%}", flush=True)
                    out.append(p)
    return out


def rewrite_ab(art, x: np.ndarray, target_name: str, threads: int, batch: int,
               work: Path, rounds: int = 6) -> dict | None:
    """Latency with the rewrite on and off (alternating windows), and whether outputs agree;
    None where the rewrite changes nothing in this file."""
    from convdeploy.latency import load_since, load_snapshot, time_runs
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions

    target = registry.get(target_name)
    on = target.compile(art, work, options=RuntimeOptions(threads, graph_rewrites=True))
    if not on.details.get("graph_rewrites"):
        return None
    off = target.compile(art, work, options=RuntimeOptions(threads, graph_rewrites=False))
    outs = [np.concatenate([r({art.input_name: x[i:i + 32]})[art.output_name]
                            for i in range(0, len(x), 32)]) for r in (on, off)]
    feed = {art.input_name: np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))}
    times = {"on": [], "off": []}
    load = load_snapshot()
    for _ in range(rounds):
        for key, runnable in (("off", off), ("on", on)):
            times[key].append(time_runs(runnable, feed, warmup=5, repeats=20,
                                        min_time_s=1.0)["median"])
    on_ms, off_ms = float(np.median(times["on"])), float(np.median(times["off"]))
    return {"target": target_name, "precision": art.precision, "threads": threads,
            "batch": batch, "rewrites": on.details.get("graph_rewrites", {}),
            "on_ms": on_ms, "off_ms": off_ms, "speedup": off_ms / on_ms,
            "on_windows": times["on"], "off_windows": times["off"],
            "outputs_identical": bool(np.array_equal(outs[0], outs[1])), **load_since(load)}


def summary(p) -> dict:
    d = p.to_dict()
    effs = [r.efficiency for r in p.layers if r.efficiency is not None]
    d.update(attributed_share=p.attributed_ms / p.latency_ms,
             max_layer_efficiency=max(effs) if effs else None,
             weighted_layers=sum(1 for r in p.layers if r.macs and r.kernels))
    return d


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(WEIGHTS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--out", type=Path, default=RESULTS / "efficiency.json")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    missing = [str(WEIGHTS[m]) for m in models if not WEIGHTS[m].exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found (../shared, or the MobileNetV2 recipe's "
              "weights: python -m convdeploy.models.mobilenetv2_cifar)")
        return 0
    from convdeploy.efficiency.plots import write_plots
    from convdeploy.files import write_text_atomic
    from convdeploy.report import environment, source_revision

    threads = [int(t) for t in args.threads.split(",")]
    t0 = time.perf_counter()
    result = {"environment": environment(max(threads)), "revision": source_revision(ROOT),
              "threads": threads, "cells": [], "rewrite": []}
    plots = args.out.parent / args.out.stem  # beside the JSON: bench/results/efficiency/
    for model in models:
        print(model, flush=True)
        with tempfile.TemporaryDirectory(prefix="convdeploy-eff-") as tmp:
            artifacts, x = export(model, Path(tmp) / "stage")
            found = profiles(model, artifacts, threads,
                             [int(b) for b in args.batches.split(",")], Path(tmp) / "work")
            result["cells"] += [summary(p) for p in found]
            write_plots(found, plots / model)
            for art in artifacts:
                if art.format.value != "onnx":
                    continue
                for name in REWRITE_TARGETS:
                    for t in threads:
                        for batch in (1, 32):
                            r = rewrite_ab(art, x, name, t, batch, Path(tmp) / "work")
                            if r is None:
                                continue
                            print(f"  rewrite {name} {art.precision} {t}t b{batch}: "
                                  f"{r['rewrites']} {r['off_ms']:.3f} -> {r['on_ms']:.3f} ms "
                                  f"(x{r['speedup']:.3f}), identical {r['outputs_identical']}",
                                  flush=True)
                            result["rewrite"].append({"model": model, **r})
    result["wall_seconds"] = time.perf_counter() - t0
    write_text_atomic(args.out, json.dumps(result, indent=1, default=str))
    print(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
