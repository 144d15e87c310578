"""Benchmark: the fpga-hls target (generated HLS C++, g++ C-simulation) on real models.

ResNet-20, ResNet-56 (published checkpoints) and MobileNetV2 (the zoo's recipe weights), W8A8
and W4A8 (512 calibration images; W4A8 round-to-nearest: PTQ methods change the weights, not
the integer path under test), on the full shared CIFAR-10 test split:

- every output code of the C-simulation compared with the integer reference's (same QDQ file);
- accuracy of both, C-simulation throughput on this CPU (images/s, OpenMP over samples),
  generate and compile times;
- the analytical estimate for the Ultra96 part (xczu3eg) at 200 MHz with the folding chosen for
  it (the fastest that fits), W4A8 beside W8A8.

    python bench/fpga.py [--models resnet20-cifar10,...] [--eval-limit N]

Writes ``bench/results/fpga.json``; ``python bench/render_docs.py`` renders the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from gpu import MODELS, SHARED  # noqa: E402  (the same three models and weights)

SCHEMES = ("w8a8", "w4a8")


def _quantized(name: str, scheme_name: str, calib, test, pre, work: Path):
    import torch

    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.models.loading import load_model
    from convdeploy.quant import capture, quantize
    from convdeploy.quant.scheme import PRESETS

    torch.manual_seed(0)
    loaded = load_model(name, str(MODELS[name]))
    example = torch.from_numpy(test.normalized(pre, 0, 2))
    qm = quantize(capture(loaded.model, example), PRESETS[scheme_name],
                  [torch.from_numpy(b) for b in calib.subset(512).batches(pre, 64)],
                  progress=False)
    return OnnxExporter(quantized=True, example=example).export(qm, work)


def _model(name: str, scheme_name: str, limit: int | None, threads: int) -> dict:
    import torch

    from convdeploy.models.datasets import load_images
    from convdeploy.models.loading import load_model
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions

    pre = load_model(name, str(MODELS[name])).preprocess_hint
    calib = load_images(SHARED / "data/cifar10/train-subset", pre, progress=False)
    test = load_images(SHARED / "data/cifar10/test", pre, progress=False).subset(limit, seed=0)
    work = Path(tempfile.mkdtemp(prefix=f"fpga-{name}-{scheme_name}-")) / "work"
    work.mkdir(parents=True)
    qdq = _quantized(name, scheme_name, calib, test, pre, work)
    t0 = time.perf_counter()
    hls = registry.get("fpga-hls").compile(qdq, work, options=RuntimeOptions(threads))
    compile_total = time.perf_counter() - t0
    ref = registry.get("int-reference").compile(qdq, work)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    codes = np.concatenate([hls.input_codes(b) for b in test.batches(pre, 500)])
    quantize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = hls.run_codes(codes).astype(np.int64)
    csim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    step = ref.chunk_samples()
    want = np.concatenate([
        ref.codes_from(hls.project.input_tensor, codes[i:i + step])[hls.project.output_tensor]
        for i in range(0, len(codes), step)]).reshape(len(codes), -1)
    ref_s = time.perf_counter() - t0
    equal = int((got == want).sum())
    est = hls.details["estimate"]
    return {"scheme": scheme_name, "images": len(codes), "outputs": int(got.size),
            "outputs_equal": equal, "bit_exact_fraction": equal / got.size,
            "samples_all_equal": int((got == want).all(axis=1).sum()),
            "accuracy_csim": float((got.argmax(1) == test.labels).mean()),
            "accuracy_int_reference": float((want.argmax(1) == test.labels).mean()),
            "csim_seconds": csim_s, "csim_images_per_s": len(codes) / csim_s,
            "csim_threads": threads, "input_quantize_seconds": quantize_s,
            "int_reference_seconds": ref_s,
            "generate_seconds": hls.details["generate_seconds"],
            "compile_seconds": hls.details["compile_seconds"],
            "compile_total_seconds": compile_total, "layers": hls.details["layers"],
            "testbench": hls.details["testbench"],
            "estimate": {k: v for k, v in est.items() if k != "layers"},
            "estimate_layers": [{k: layer[k] for k in ("name", "kind", "reuse", "multipliers",
                                                       "cycles", "dsp", "lut", "bram18")}
                                for layer in est["layers"]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fpga.json")
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"skipped: {SHARED} not found")
        return 0
    import subprocess

    from convdeploy.report import environment, source_revision

    gxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout
    revision = source_revision(ROOT) or "unknown"
    result = {"revision": revision,
              "environment": environment(args.threads),
              "compiler": gxx.splitlines()[0] if gxx else "missing",
              "python": platform.python_version(), "models": {}}
    if args.out.exists():  # models run earlier (another invocation) are kept
        result["models"] = json.loads(args.out.read_text()).get("models", {})
    for name in args.models.split(","):
        if not MODELS[name].exists():
            print(f"skipped {name}: {MODELS[name]} not found")
            continue
        for scheme_name in args.schemes.split(","):
            entry = {**_model(name, scheme_name, args.eval_limit, args.threads),
                     "revision": revision}  # kept entries keep theirs: no mixed labels
            result["models"].setdefault(name, {})[scheme_name] = entry
            result["revision"] = ", ".join(sorted({e.get("revision", "unknown")
                                                   for m in result["models"].values()
                                                   for e in m.values()}))
            print(name, scheme_name, json.dumps({k: v for k, v in entry.items()
                                                 if not k.startswith("estimate")}))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
