"""Benchmark: modern ConvNets (the zoo's ConvNeXt, InceptionNeXt, HorNet, LSNet,
MobileNetV3-style nets) on every integer target, as an audit of bench/specs/modern_convnets.yaml:
accuracy, top-1 agreement, SQNR, LSB distance to the integer reference, the float islands each
target runs, int8/float latency on cpu-ort, cpu-openvino and mobile-litert.

    python bench/modern_convnets.py [--models convnext-cifar10,...] [--eval-limit N]

Writes ``bench/results/modern_convnets.json`` (+ .html, .png) through the audit bench
(``bench/audit_cifar.py``); a model whose weights are missing is skipped and named (train it
with ``python -m convdeploy.models.modern_cifar --model NAME --train DIR``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from audit_cifar import main as audit_bench

SPEC = Path(__file__).resolve().parent / "specs" / "modern_convnets.yaml"

if __name__ == "__main__":
    sys.exit(audit_bench(["--spec", str(SPEC), "--name", "modern_convnets", *sys.argv[1:]],
                         description=__doc__.replace("\n", " ", 1)))
