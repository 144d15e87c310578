"""Benchmark: the video zoo (P3D, SqueezeTime) on every target, as an audit of
bench/specs/video.yaml on the camera-motion clips: clip accuracy, top-1 agreement, LSB distance
to the integer reference, latency per clip at batch 1 with 1 and 2 threads, int8/float ratios;
plus each model's single-frame baseline (from its recipe's summary).

    python bench/video.py [--models p3d-motion,...] [--eval-limit N]

Generates (and caches) the train/test clips first, then runs the audit bench
(``bench/audit_cifar.py``); writes ``bench/results/video.json`` (+ .html, .png). A model whose
weights are missing is skipped and named (train it with ``python -m
convdeploy.models.video_motion --model NAME --train DIR --eval DIR``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from audit_cifar import SHARED
from audit_cifar import main as audit_bench

ROOT = Path(__file__).resolve().parent
SPEC = ROOT / "specs" / "video.yaml"


def main(argv: list[str]) -> int:
    if not (SHARED / "data" / "cifar10" / "test").is_dir():
        print(f"skipped: {SHARED} (the shared CIFAR-10 data) not found")
        return 0
    from convdeploy.models.video_motion import TEST_CLIPS, TRAIN_CLIPS, motion_set, \
        weights_path

    data = SHARED / "data" / "cifar10"
    motion_set(data / "train-subset", TRAIN_CLIPS, seed=1)  # the recipe's clips, cached
    motion_set(data / "test", TEST_CLIPS, seed=2)
    code = audit_bench(["--spec", str(SPEC), "--name", "video", *argv])
    result = ROOT / "results" / "video.json"
    if result.exists():
        out = json.loads(result.read_text())
        out["single_frame_baseline"] = {}
        for name in ("p3d", "squeezetime"):
            for kind, path in (("model", weights_path(name)), ("single_frame", weights_path(
                    name).with_name(f"{name}-motion-single-frame.pt"))):
                summary = path.with_suffix(".json")
                if summary.exists():
                    out["single_frame_baseline"].setdefault(f"{name}-motion", {})[kind] = \
                        json.loads(summary.read_text())
        result.write_text(json.dumps(out, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
