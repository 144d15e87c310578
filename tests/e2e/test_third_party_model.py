"""A ConvNet from a third-party model library (Hugging Face transformers' ConvNeXt, built from
its config: LayerNorm, GELU, permutes, layer scales), exported int8 for every CPU, mobile and
DSP target from the CLI, as a user would."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers", reason="transformers is not installed "
                                           "(pip install 'convdeploy[test]')")
pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed "
                                             "(pip install 'convdeploy[mobile]')")

MODULE = """
import torch
from torch import nn
from transformers import ConvNextConfig, ConvNextForImageClassification


class Logits(nn.Module):
    # the library returns an output object; the deployed model returns the logits
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        config = ConvNextConfig(num_channels=3, patch_size=2, hidden_sizes=[16, 32],
                                depths=[1, 1], num_stages=2, num_labels=4)
        self.model = ConvNextForImageClassification(config)

    def forward(self, x):
        return self.model(x).logits


def build():
    return Logits()
"""
TARGETS = ["cpu-ort", "cpu-openvino", "mobile-litert", "dsp-qnn-htp", "int-reference"]


def test_transformers_convnext_exports_int8_to_every_target(tmp_path):
    (tmp_path / "hfconvnext.py").write_text(MODULE)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 255, (48, 16, 16, 3), dtype=np.uint8),
             y=rng.integers(0, 4, 48))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [sys.executable, "-m", "convdeploy.cli", "export", "hfconvnext:build", "--int8",
         "--calib", "data.npz", "--eval", "data.npz", "--targets", ",".join(TARGETS),
         "--out", "o", "--calib-size", "32", "--repeats", "3", "--min-time", "0", "--batch-size", "4",
         "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    rows = {r["target"]: r for r in report["results"] if r["scheme"] == "w8a8"}
    assert set(TARGETS) <= set(rows), sorted(rows)
    for target in TARGETS:
        assert rows[target]["top1_agreement"] is not None, target
    islands = rows["mobile-litert"]["runtime"]["float_islands"]
    assert islands and all("LayerNormalization" in i for i in islands)
    assert rows["int-reference"]["runtime"]["float_islands"] == islands
