"""``convdeploy tune`` end to end on the embedded demo model: outputs, the export report of the
chosen configuration, and bad input refused in one message."""
from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli import cli

FAST = ["--eval-limit", "400", "--calib-size", "64", "--tune-size", "200", "--rounds", "1",
        "--repeats", "5", "--min-time", "0", "--threads", "1", "--no-progress"]


def test_tune_writes_overrides_yaml_report_and_the_search(tmp_path):
    out = tmp_path / "t"
    res = cli("tune", "--target", "cpu-ort", "--max-drop", "0.5", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "| configuration |" in res.stdout
    data = json.loads((out / "tune.json").read_text())
    assert [s["strategy"] for s in data["searches"]] == [
        "latency-driven", "revert-most-sensitive", "first-fit"]
    assert data["reference"]["tune_images"] == 200 and data["reference"]["eval_images"] == 200
    labels = [f["label"] for f in data["final"]]
    # the start is all-8 unless all-4 measured >= 3% faster (timing: either may happen)
    assert labels[0] in ("all-8", "all-4") and labels[-1] == "float" and "latency-driven" in labels
    for f in data["final"]:
        assert 0 <= f["accuracy"] <= 1 and f["latency_ms"] > 0 and f["mcnemar_p"] <= 1
    assert data["reference"]["confidence"] == 0.95
    for s in data["searches"]:  # what each chose meets the budget on the tuning split
        for st in s["steps"]:  # judged on a bound below the accuracy measured
            assert st["accuracy_bound"] <= st["accuracy"] + 1e-12
        if s["chosen"] is not None:
            chosen = next(st for st in s["steps"] if st["config"] == s["chosen"])
            assert chosen["accuracy_bound"] >= data["reference"]["tune_accuracy"] - 0.005 - 1e-12
    assert data["seconds"]["total"] > 0 and set(data["uniform"]) == {"8", "4"}
    ours = data["searches"][0]
    if ours["chosen"] is not None:  # chosen from the feasible shortlist measured again
        assert 1 <= len(ours["remeasured"]) <= 4
        assert ours["chosen"] in [r["config"] for r in ours["remeasured"]]
        for f in data["final"]:  # each baseline compared with it on the final windows
            if f["label"] in ("revert-most-sensitive", "first-fit"):
                vs = f["latency_driven_vs_this"]
                assert vs["ratio"] > 0 and vs["verdict"].split(" ")[0] in (
                    "faster", "slower", "tie")
    report = json.loads((out / "export" / "report.json").read_text())
    assert {r["target"] for r in report["results"]} >= {"cpu-ort"}
    from convdeploy.configfile import parse_export_file

    f = parse_export_file(out / "tune.yaml")
    assert f.targets == ("cpu-ort",) and f.scheme.ptq.methods == ()
    assert len(f.scheme.scheme.overrides) == len(data["searches"][0]["chosen"])
    assert (out / "search.png").stat().st_size > 0 and not (out / "work").exists()


def test_tune_on_the_htp_chooses_activation_widths_by_an_estimate(tmp_path):
    """dsp-qnn-htp: 8- or 16-bit activations per layer; its timings mean nothing here, so the
    searches minimise the share of MACs at 16 bits, and every output says it is an estimate."""
    pytest.importorskip("onnxruntime_qnn")
    out = tmp_path / "t"
    res = cli("tune", "--target", "dsp-qnn-htp", "--max-drop", "0", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    data = json.loads((out / "tune.json").read_text())
    assert set(data["uniform"]) == {"8", "8a16"}
    assert data["uniform"]["8a16"]["estimated_cost"] == pytest.approx(1.0)
    assert data["uniform"]["8"]["estimated_cost"] == 0.0
    assert any("estimate" in n for n in data["notes"])
    for s in data["searches"]:
        for st in s["steps"]:
            assert "latency_ms" not in st and 0.0 <= st["estimated_cost"] <= 1.0
            assert set(st["config"].values()) <= {"8a16"}
        if s["chosen"] is not None:  # it met the (zero-drop) budget on the tuning split
            chosen = next(st for st in s["steps"] if st["config"] == s["chosen"])
            assert chosen["accuracy_bound"] >= data["reference"]["tune_accuracy"] - 1e-12
    for f in data["final"]:
        assert f["latency_ms"] is None and "raised_to_8a16" in f
    assert "not measured" in (out / "tune.md").read_text()
    for line in (out / "overrides.txt").read_text().split():
        assert line == "--override" or line.endswith("=8a16")


@pytest.mark.parametrize("args,needle", [
    (["--target", "cpu-ort", "--max-drop", "-1"], "--max-drop -1.0 is below 0"),
    (["--target", "gpu-triton", "--max-drop", "1"], "offers no per-layer choice"),
    (["--target", "gpu-magic", "--max-drop", "1"], "unknown target 'gpu-magic'"),
    (["--target", "cpu-ort", "--max-drop", "1", "--override", "nope=float"],
     "names no layer of this model: nope"),
    (["--target", "cpu-ort", "--max-drop", "1", "--scheme", "w4a8"], "starts from the w8a8"),
    (["--target", "cpu-ort", "--max-drop", "1", "--tune-size", "5000"],
     "leaves no evaluation images"),
    (["--target", "cpu-ort", "--max-drop", "1", "--confidence", "1.5"],
     "--confidence 1.5 is not in [0.5, 1)"),
])
def test_bad_tune_input_is_one_clear_message(tmp_path, args, needle):
    fast = [a for a in FAST if a not in ("--tune-size", "200")]
    res = cli("tune", *args, "--out", tmp_path / "t", *fast)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t").exists()


def test_several_budgets_share_one_preparation(tmp_path):
    """tune_budgets: one calibration, reference, uniform models and sensitivity for every
    budget; each budget's choice meets it on the tuning split."""
    from convdeploy.config import DataConfig, DeployConfig, MeasureConfig, ModelSource
    from convdeploy.quant.scheme import W8A8
    from convdeploy.tuning.run import TuneConfig, tune_budgets

    cfg = DeployConfig(model=ModelSource(), data=DataConfig(calib_size=64, eval_limit=400),
                       scheme=W8A8, targets=("cpu-ort",), progress=False,
                       measure=MeasureConfig(threads=1, batch_size=1, min_time_s=0.0,
                                             repeats=5))
    results = tune_budgets(cfg, TuneConfig("cpu-ort", 0.0, tune_size=200, rounds=1),
                           tmp_path, (0.0, 50.0))
    assert len(results) == 2
    assert results[0].seconds["prepare"] == results[1].seconds["prepare"]
    assert any("one preparation for budgets 0.0, 50.0" in n for n in results[1].notes)
    for r, drop in zip(results, (0.0, 50.0)):
        floor = r.reference["tune_accuracy"] - drop / 100 - 1e-12
        for s in r.searches:
            if s.chosen is not None:
                assert next(st for st in s.steps if st.config == s.chosen).accuracy >= floor
    # within 50 points the start is feasible: no search raises a layer
    assert all(s.chosen is not None and not any(p == "float" for _, p in s.chosen)
               for s in results[1].searches)
