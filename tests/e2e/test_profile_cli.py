"""``convdeploy profile`` end to end: outputs, and bad input refused in one message."""
from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli import cli

FAST = ["--eval-limit", "60", "--calib-size", "64", "--repeats", "5", "--min-time", "0",
        "--no-progress", "--threads", "1"]
GIVEN = ["--peak", "float=100@20", "--peak", "int8=200@20"]  # no peak measurement in tests


def test_profile_writes_json_markdown_and_plots(tmp_path):
    out = tmp_path / "prof"
    res = cli("profile", "--int8", "--targets", "cpu-ort,mobile-litert", "--out", out,
              *FAST, *GIVEN)
    assert res.returncode == 0, res.stderr
    assert "waterline" in res.stdout and "Traceback" not in res.stderr
    data = json.loads((out / "profile.json").read_text())
    cells = {(p["target"], p["precision"]) for p in data["profiles"]}
    assert cells == {(t, s) for t in ("cpu-ort", "mobile-litert") for s in ("float", "w8a8")}
    for p in data["profiles"]:
        convs = [r for r in p["layers"] if r["op"] == "Conv"]
        assert len(convs) == 4 and all(r["kernels"] and r["macs"] > 0 for r in convs)
        assert p["peaks"]["int8"]["source"] == "given" and p["batch"] == 1
        assert p["attributed_ms"] + p["unattributed_ms"] == pytest.approx(p["latency_ms"])
    assert {x.name for x in out.iterdir()} >= {
        "profile.json", "profile.md", "efficiency-gap.png", "waterline-cpu-ort-t1-b1.png",
        "waterline-mobile-litert-t1-b1.png", "model.w8a8.onnx"}
    assert not (out / "work").exists()
    assert "| features.1.0 | Conv | int8 |" in (out / "profile.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (["--targets", "dsp-qnn-htp"], "target dsp-qnn-htp has no per-layer profile"),
    (["--targets", "mobile-litert-ref"], "target mobile-litert-ref has no per-layer profile"),
    (["--peak", "int8=fast"], "is not DTYPE=GMACS@GBS"),
    (["--peak", "int4=100@10"], "the dtype is one of float, int8"),
    (["--peak", "int8=-1@10"], "both figures are positive"),
])
def test_bad_profile_input_is_one_clear_message(tmp_path, args, needle):
    res = cli("profile", "--int8", "--out", tmp_path / "p", *FAST, *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "p").exists()
