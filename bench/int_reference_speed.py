"""Benchmark: the integer reference's time on the full shared CIFAR-10 test split.

ResNet-20 W8A8 (published checkpoint, 512 calibration images), the QDQ file lowered once, then
``int-reference`` evaluated on all 10,000 test images at the report's batch size (100). Writes
``bench/results/int_reference_speed.json`` with the wall time, the git revision, a digest of the
integer logits (equal digests = bit-identical outputs across revisions) and, when LiteRT is
installed, the number of logits that differ from LiteRT's reference kernels (0 = bit-exact).

    python bench/int_reference_speed.py [--eval-limit N] [--tag NAME]

Run it at two revisions to compare them (``--tag`` names the result file); the README states
the ratio of the two files. Skips (exit 0, with a message) without ../shared.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    weights = SHARED / "models" / "resnet20-cifar10.th"
    if not weights.exists():
        print(f"skipped: {weights} not found (../shared is absent)")
        return 0
    import torch

    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.onnx_export import export_onnx
    from convdeploy.models.datasets import load_images
    from convdeploy.models.loading import load_model
    from convdeploy.quant import W8A8, capture, quantize
    from convdeploy.report import environment, source_revision
    from convdeploy.targets.int_reference import IntegerRunnable

    torch.manual_seed(0)
    loaded = load_model("resnet20-cifar10", str(weights))
    pre = loaded.preprocess_hint
    calib = load_images(SHARED / "data/cifar10/train-subset", pre, progress=False).subset(512)
    test = load_images(SHARED / "data/cifar10/test", pre, progress=False).subset(args.eval_limit)
    example = torch.from_numpy(test.normalized(pre, 0, 2))
    qm = quantize(capture(loaded.model, example), W8A8,
                  [torch.from_numpy(b) for b in calib.batches(pre, 64)], progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(qm, path, example=example, quantized=True)
        graph = lower_file(path)
        runnable = IntegerRunnable(graph)
        t0 = time.perf_counter()
        logits = np.concatenate([runnable({"input": b})[graph.output]
                                 for b in test.batches(pre, 100)])
        seconds = time.perf_counter() - t0
        litert = _litert_differences(path, graph, test, pre, logits)
    result = {"model": "resnet20-cifar10", "scheme": "w8a8", "samples": len(test),
              "revision": source_revision(ROOT) or "unknown", "int_reference_seconds": seconds,
              "accuracy": float((logits.argmax(1) == test.labels).mean()),
              "logits_sha256": hashlib.sha256(np.ascontiguousarray(logits).tobytes()).hexdigest(),
              "logits_differing_from_litert_reference": litert,
              "environment": environment(torch.get_num_threads())}
    name = "int_reference_speed" + (f"_{args.tag}" if args.tag else "") + ".json"
    out = ROOT / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    return 0


def _litert_differences(onnx_path: Path, graph, test, pre, logits) -> int | None:
    """Output values where LiteRT's reference kernels differ from the integer reference."""
    try:
        from convdeploy.exporters.artifact import Artifact, ArtifactFormat
        from convdeploy.exporters.tflite_export import TfliteExporter
        from convdeploy.targets.mobile_litert import LiteRtRunnable
    except ImportError:
        return None
    src = Artifact(name="w8a8", format=ArtifactFormat.ONNX, precision="w8a8", path=onnx_path,
                   input_shape=graph.input_shape)
    tfl = TfliteExporter().export(src, onnx_path.parent)
    runnable = LiteRtRunnable(tfl.path, "BUILTIN_REF", 2)
    ref = np.concatenate([runnable({"input": b})["output"] for b in test.batches(pre, 100)])
    return int((ref != logits).sum())


if __name__ == "__main__":
    sys.exit(main())
