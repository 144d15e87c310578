"""Benchmark: ResNet-20 (published checkpoint) float vs int8 per-channel on the CPU targets, with
onnxruntime's own ``quantize_static`` (QDQ, per-channel, MinMax) on the same model and data, in
the same run. Writes bench/results/cpu_int8_resnet20.json and prints a table.

    python bench/cpu_int8_resnet20.py [--shared ../shared] [--repeats 200]

Skips (exit 0, with a message) when ../shared is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
import time
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)

import convdeploy as cd
from convdeploy import check
from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.files import write_text_atomic
from convdeploy.models.datasets import load_images
from convdeploy.models.zoo import CIFAR_PREPROCESS
from convdeploy.pipeline import evaluate_on_target
from convdeploy.targets import registry
from convdeploy.targets.base import RuntimeOptions

ROOT = Path(__file__).resolve().parent
TARGETS = ("cpu-ort", "cpu-openvino")


class _Reader:
    """onnxruntime CalibrationDataReader over the same calibration images convdeploy uses."""

    def __init__(self, images: np.ndarray, batch: int = 1) -> None:
        self.batches = iter([images[i:i + batch] for i in range(0, len(images), batch)])

    def get_next(self):
        x = next(self.batches, None)
        return None if x is None else {"input": x}


def ort_quantize_static(float_onnx: Path, calib: np.ndarray, out: Path,
                        weight_bits: int = 8) -> float:
    """onnxruntime's static QDQ quantizer (per-channel, MinMax, uint8 activations); seconds."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t0 = time.perf_counter()
    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(float_onnx), str(pre))
    quantize_static(str(pre), str(out), _Reader(calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8 if weight_bits == 8 else QuantType.QInt4,
                    calibrate_method=CalibrationMethod.MinMax)
    return time.perf_counter() - t0


def measure_peer(path: Path, eval_set, float_logits, cfg: cd.DeployConfig) -> list[dict]:
    """The peer's model through the same compile/evaluate/time path as convdeploy's rows."""
    art = Artifact(name=path.stem, format=ArtifactFormat.ONNX,
                   precision="ort quantize_static w8a8 (QDQ, per-channel, MinMax)", path=path,
                   input_shape=CIFAR_PREPROCESS.input_shape)
    return [evaluate_on_target(registry.get(name), art, cfg, path.parent, eval_set,
                               CIFAR_PREPROCESS, {"float": float_logits})[0]
            for name in TARGETS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent.parent / "shared")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "cpu_int8_resnet20.json")
    args = parser.parse_args(argv)
    ckpt = args.shared / "models" / "resnet20-cifar10.th"
    data = args.shared / "data" / "cifar10"
    if not ckpt.is_file() or not (data / "test").is_dir():
        print(f"skipped: ../shared not found at {args.shared} (needs models/resnet20-cifar10.th "
              "and data/cifar10); nothing measured")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-r20-"))
    cfg = cd.DeployConfig(
        model=cd.ModelSource("resnet20-cifar10", str(ckpt)),
        data=cd.DataConfig(calib=str(data / "train-subset"), eval=str(data / "test"),
                           calib_size=512),
        scheme=cd.W8A8, targets=TARGETS, out=work / "convdeploy",
        measure=cd.MeasureConfig(repeats=args.repeats), progress=False)
    t0 = time.perf_counter()
    report = cd.run(cfg)
    ours_s = time.perf_counter() - t0
    # The same 512 calibration images and the same float ONNX for the peer.
    calib = load_images(cfg.data.calib, CIFAR_PREPROCESS, progress=False).subset(512, seed=0)
    eval_set = load_images(cfg.data.eval, CIFAR_PREPROCESS, progress=False)
    float_onnx = cfg.out / "model.float.onnx"
    peer_path = work / "ort_static.onnx"
    peer_s = ort_quantize_static(float_onnx, calib.normalized(CIFAR_PREPROCESS), peer_path)
    float_target = registry.get("cpu-ort").compile(
        Artifact(name="f", format=ArtifactFormat.ONNX, precision="float",
                 path=float_onnx), work, options=RuntimeOptions(cfg.measure.threads))
    float_logits = check.run_dataset(float_target, eval_set, CIFAR_PREPROCESS, batch_size=100,
                                     input_name="input", output_name="output", progress=False)
    peer_rows = measure_peer(peer_path, eval_set, float_logits, cfg)
    result = summarize(report, peer_rows, ours_s, peer_s)
    write_text_atomic(args.out, json.dumps(result, indent=2))
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


def summarize(report, peer_rows: list[dict], ours_s: float, peer_s: float) -> dict:
    rows = [r for r in report.results] + peer_rows
    lat = {(r["target"], r["scheme"]): r["latency_ms"]["batch1_median"] for r in rows}
    ratios = {t: {"convdeploy_int8_over_float": lat[(t, "w8a8")] / lat[(t, "float")],
                  "ort_static_int8_over_float": lat[(t, peer_rows[0]["scheme"])]
                  / lat[(t, "float")]} for t in TARGETS}
    return {"benchmark": "cpu_int8_resnet20", "model": report.model,
            "float_accuracy": report.float["accuracy"], "environment": report.environment,
            "convdeploy_seconds_total": ours_s, "ort_quantize_static_seconds": peer_s,
            "convdeploy_timings_s": report.timings_s,
            "latency_ratio_batch1": ratios, "rows": rows}


def print_table(result: dict) -> None:
    print(f"ResNet-20, float accuracy {100 * result['float_accuracy']:.2f}% "
          f"({result['environment']['cpu']}, {result['environment']['threads']} threads)")
    print(f"{'target':14}{'scheme':54}{'acc %':>8}{'agree %':>9}{'b1 ms':>8}{'b32 ms/img':>12}")
    for r in result["rows"]:
        lat = r["latency_ms"]
        print(f"{r['target']:14}{r['scheme'][:53]:54}{100 * r['accuracy']:8.2f}"
              f"{100 * r['top1_agreement']:9.2f}{lat['batch1_median']:8.3f}"
              f"{lat['per_image_at_batch_ms']:12.4f}")


if __name__ == "__main__":
    sys.exit(main())
