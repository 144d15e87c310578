"""Benchmark: mobile and DSP targets on the shared CIFAR-10 test split (full, 10,000 images).

For ResNet-20 (published checkpoint) and MobileNetV2 (the project's recipe), W8A8 PTQ through
``pipeline.run`` with targets cpu-ort, int-reference, mobile-litert (XNNPACK),
mobile-litert-ref (reference kernels) and dsp-qnn-htp (HTP emulator): accuracy, top-1
agreement, LSB distance to the simulation and to the integer reference, bit-exact share. Then
LiteRT latency, int8 vs float, XNNPACK at 1 and 2 threads (batch 1 and batch 32), in the same
run. Writes bench/results/mobile_dsp_<model>.json.

    python bench/mobile_dsp.py --model resnet20 [--eval-limit N]
    python bench/mobile_dsp.py --model mobilenetv2

Skips (exit 0, with a message) when ../shared, the weights or the mobile extra are absent.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"
TARGETS = ("cpu-ort", "int-reference", "mobile-litert", "mobile-litert-ref", "dsp-qnn-htp")


def _weights(model: str) -> tuple[str, str | None]:
    if model == "resnet20":
        return "resnet20-cifar10", str(SHARED / "models" / "resnet20-cifar10.th")
    from convdeploy.models.mobilenetv2_cifar import WEIGHTS

    return "mobilenetv2-cifar10", str(WEIGHTS) if WEIGHTS.exists() else None


def litert_latency(out: Path, sample: np.ndarray) -> dict:
    """int8 vs float .tflite on XNNPACK, 1 and 2 threads, batch 1 and 32."""
    from convdeploy import latency
    from convdeploy.targets.mobile_litert import LiteRtRunnable

    result = {}
    for threads in (1, 2):
        for precision in ("float", "w8a8"):
            runnable = LiteRtRunnable(out / f"model.{precision}.tflite", "AUTO", threads)
            result[f"{precision}@{threads}t"] = latency.measure(
                runnable, sample, "input", batch_size=32, warmup=20, repeats=200,
                min_time_s=1.0)  # the floor every latency cell of the project uses
        f, q = result[f"float@{threads}t"], result[f"w8a8@{threads}t"]
        result[f"speedup_int8_over_float@{threads}t"] = {
            "batch1": f["batch1_median"] / q["batch1_median"],
            "batch32": f["per_image_at_batch_ms"] / q["per_image_at_batch_ms"]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet20", "mobilenetv2"], default="resnet20")
    parser.add_argument("--eval-limit", type=int, help="evaluate a subset (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/convdeploy-bench-mobile"))
    args = parser.parse_args()
    missing = [m for m in ("ai_edge_litert", "onnxruntime_qnn") if importlib.util.find_spec(m)
               is None]
    name, weights = _weights(args.model)
    if not (SHARED / "data" / "cifar10" / "test").is_dir() or weights is None or missing:
        print(f"skipped: needs ../shared, the {name} weights and {missing or 'the mobile extra'}")
        return 0

    from convdeploy.config import DataConfig, DeployConfig, MeasureConfig, ModelSource
    from convdeploy.files import write_text_atomic
    from convdeploy.models.datasets import load_images
    from convdeploy.models.zoo import CIFAR_PREPROCESS
    from convdeploy.pipeline import run
    from convdeploy.quant.scheme import W8A8

    data = SHARED / "data" / "cifar10"
    out = args.out / args.model
    cfg = DeployConfig(model=ModelSource(name, weights),
                       data=DataConfig(calib=str(data / "train-subset"), eval=str(data / "test"),
                                       eval_limit=args.eval_limit),
                       scheme=W8A8, targets=TARGETS, out=out, overwrite=True,
                       measure=MeasureConfig(threads=1, repeats=30), progress=False)
    t0 = time.perf_counter()
    report = run(cfg)
    rows = [{k: r.get(k) for k in ("target", "scheme", "accuracy", "top1_agreement",
                                   "top1_agreement_vs_simulation", "max_lsb_vs_simulation",
                                   "max_lsb_vs_int_reference", "bit_exact_fraction",
                                   "eval_seconds", "runtime", "model_size_bytes")}
            for r in report.results]
    sample = load_images(data / "test", CIFAR_PREPROCESS).normalized(CIFAR_PREPROCESS, 0, 32)
    result = {"model": name, "scheme": report.scheme.get("label"),
              "eval_images": report.data["eval"].get("samples"), "rows": rows,
              "litert_latency_ms": litert_latency(out, sample),
              "wall_seconds": time.perf_counter() - t0, "environment": report.environment}
    path = ROOT / "results" / f"mobile_dsp_{args.model}.json"
    write_text_atomic(path, json.dumps(result, indent=2, default=str) + "\n")
    for r in rows:
        print(f"{r['target']:18s} {r['scheme']:6s} acc {r['accuracy']:.4f} "
              f"lsb-vs-int {r['max_lsb_vs_int_reference']} exact {r['bit_exact_fraction']}")
    print(json.dumps(result["litert_latency_ms"], indent=1)[:2000])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
