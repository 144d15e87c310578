"""The CLI end to end, as a user runs it (subprocesses, real files)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import seeded_tiny_net

FAST = ["--eval-limit", "120", "--calib-size", "64", "--repeats", "3", "--min-time", "0", "--batch-size", "4",
        "--no-progress"]


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TRITON_INTERPRET", None)  # the test process's own switch (tests/conftest.py)
    return subprocess.run([sys.executable, "-m", "convdeploy.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_default_demo_export_int8(tmp_path):
    out = tmp_path / "out"
    res = cli("export", "--int8", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    assert "cpu-ort" in res.stdout and "Traceback" not in res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "digits-convnet" and report["float"]["accuracy"] > 0.95
    rows = {(r["target"], r["scheme"]): r for r in report["results"]}
    assert set(rows) == {(t, s) for t in ("reference", "cpu-ort", "cpu-openvino")
                         for s in ("float", "w8a8")} | {("int-reference", "w8a8")}
    assert rows[("int-reference", "w8a8")]["max_lsb_vs_int_reference"] == 0
    for (target, scheme), r in rows.items():
        assert r["top1_agreement"] > 0.95
        if target == "int-reference":
            assert "oracle" in r["latency_ms"]["not_measured"]
        else:
            assert r["latency_ms"]["batch1_median"] > 0
        if scheme == "w8a8" and target != "reference":
            assert r["max_lsb_vs_simulation"] <= 8
            assert r["max_lsb_vs_int_reference"] <= 8 and r["bit_exact_fraction"] > 0.5
            assert abs(r["accuracy"] - report["float"]["accuracy"]) < 0.03
    assert rows[("cpu-ort", "w8a8")]["runtime"]["integer_kernels"]["QLinearConv"] == 4
    assert {p.name for p in out.iterdir()} == {
        "model.float.onnx", "model.w8a8.onnx", "model.w8a8.encodings.json",
        "report.json", "report.md"}
    assert "| target |" in (out / "report.md").read_text()


def test_user_model_from_import_path_with_npz_data(tmp_path):
    import numpy as np

    (tmp_path / "mynets.py").write_text(
        "import sys; sys.path.insert(0, %r)\nfrom tests.conftest import TinyNet\n"
        "def build():\n    return TinyNet()\n" % str(os.getcwd()))
    torch.save({"state_dict": seeded_tiny_net().state_dict()}, tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8),
             y=rng.integers(0, 5, 40))
    res = cli("export", "mynets:build", "--weights", "w.pt", "--int8", "--calib", "data.npz",
              "--eval", "data.npz", "--targets", "cpu-ort", "--out", "o", *FAST, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["data"]["preprocess"]["size"] == [16, 16]  # native size, RGB in [0, 1]
    assert report["data"]["preprocess"]["mean"] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("args,needle", [
    (["export", "no-such-model"], "unknown model"),
    (["export", "resnet20-cifar10", "--int8"], "needs --weights"),
    (["export", "digits-convnet", "--weights", "/nonexistent.pt"], "does not exist"),
    (["export", "--int8", "--calib", "/nonexistent_dir"], "does not exist"),
    (["export", "--int8", "--targets", "tpu-magic"], "unknown target"),
    (["export", "--int8", "--exclude", "nolayer"], "names no layer"),
    (["export", "--int8", "--mean", "0.5,0.5,0.5", "--std", "1,1,1"], "failed on an input"),
    (["export", "--scheme", "w4a8", "--ptq", "magic"], "unknown PTQ method"),
    (["export", "--int8", "--scheme", "w4a8"], "contradicts"),
    (["export", "--scheme", "w4a8", "--override", "fc=3"], "is not LAYER=4"),
    (["export", "--ptq", "cle"], "need a scheme"),
    (["export", "--scheme", "w4a8", "--targets", "mobile-litert"], "no 4-bit weights"),
    (["export", "--scheme", "w8a8", "--act-dtype", "int8", "--targets", "dsp-qnn-htp"],
     "unsigned"),
    (["qat", "--scheme", "w4a8", "--train", "/nonexistent_dir"], "does not exist"),
    (["export", "tests.conftest:TinyNet", "--int8", "--calib", "/no/calib", "--eval", "."],
     "--calib path /no/calib does not exist"),
    (["audit", "digits-convnet", "--targets", "cpu-ort,gpu-magic"],
     "unknown target 'gpu-magic'"),
    (["audit", "digits-convnet", "--schemes", "float,w4a8", "--targets", "mobile-litert"],
     "cannot run on target mobile-litert"),
    (["audit", "digits-convnet", "--eval", "/no/eval"], "data.eval: path /no/eval"),
    (["export", "--int8", "--targets", "fpga-hls", "--fpga-part", "xc7z999"],
     "unknown FPGA part 'xc7z999'"),
    (["export", "--int8", "--conv3d-as-2d"], "has no Conv3d: --conv3d-as-2d does not apply"),
])
def test_user_errors_are_one_clear_message(tmp_path, args, needle):
    fast = ["--no-progress"] if args[0] == "audit" else FAST
    res = cli(*args, "--out", tmp_path / "o", *fast)
    assert res.returncode == 2
    assert needle in res.stderr and "fix:" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_fpga_hls_export_writes_the_project_and_the_estimate(tmp_path):
    out = tmp_path / "out"
    res = cli("export", "--int8", "--targets", "fpga-hls", "--fpga-fps", "1000", "--out", out,
              *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    row = next(r for r in report["results"] if r["target"] == "fpga-hls")
    assert row["max_lsb_vs_int_reference"] == 0 and row["bit_exact_fraction"] == 1.0
    est = row["runtime"]["estimate"]
    assert est["fps"] >= 1000 and est["label"].startswith("analytical estimate")
    assert row["runtime"]["synthesis"]["status"] == "not run"
    project = out / row["runtime"]["project"]
    for name in ("firmware/model_top.cpp", "firmware/parameters.h", "build_prj.tcl",
                 "vivado_project.tcl", "README.md", "tb/testbench.cpp", "tb_data/expected.bin"):
        assert (project / name).is_file(), name
    assert "FPGA estimate" in (out / "report.md").read_text()
    assert "fpga-hls w8a8: estimate" in res.stdout


def test_video_model_export_on_a_folder_of_clips(tmp_path):
    """A P3D video model (random weights) from mp4 clips to int8 on ORT (5-D QDQ) and LiteRT
    (the (2+1)D rewrite), both judged against the integer reference."""
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'convdeploy[video]')")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    import numpy as np

    from convdeploy.models.clips import write_clip
    from convdeploy.models.video_motion import p3d

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for k in range(6):
            write_clip(tmp_path / "clips" / label / f"{k}.mp4",
                       rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    torch.save(p3d().state_dict(), tmp_path / "p3d.pt")
    out = tmp_path / "out"
    res = cli("export", "p3d-motion", "--weights", tmp_path / "p3d.pt", "--int8", "--calib",
              tmp_path / "clips", "--eval", tmp_path / "clips", "--targets",
              "cpu-ort,mobile-litert", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["preprocess"]["frames"] == 8
    rows = {(r["target"], r["scheme"]): r for r in report["results"]}
    assert rows[("int-reference", "w8a8")]["runtime"]["rewritten_2d"]
    assert rows[("mobile-litert", "w8a8")]["runtime"]["rewritten_2d"]
    assert rows[("cpu-ort", "w8a8")]["max_lsb_vs_int_reference"] <= 2
    assert rows[("mobile-litert", "w8a8")]["max_lsb_vs_int_reference"] <= 2


def test_conv3d_as_2d_exports_the_2d_form_for_the_onnx_runtimes(tmp_path):
    """--conv3d-as-2d: the shipped P3D with no 5-D op in its QDQ file, on cpu-ort and
    cpu-openvino (whose pads of the raw input it reads as pads of the codes), near int-ref."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    import onnx

    out = tmp_path / "out"
    res = cli("export", "p3d-motion", "--conv3d-as-2d", "--int8", "--targets",
              "cpu-ort,cpu-openvino", "--out", out, *FAST[:2], "--calib-size", "16",
              "--repeats", "2", "--min-time", "0", "--batch-size", "8", "--no-progress")
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert len(report["model_info"]["conv3d_as_2d"]) == 15
    assert report["model_info"]["folded_batchnorms"] > 0
    assert "(2+1)D form of the 15 Conv3d" in (out / "report.md").read_text()
    graph = onnx.load(str(out / "model.w8a8.onnx")).graph
    weights = [t for t in graph.initializer if t.name.endswith("_2d_weight.quantized")]
    assert len(weights) == 15 and all(len(t.dims) == 4 for t in weights)
    assert not any(len(t.dims) == 5 for t in graph.initializer)  # no 5-D kernel is left
    rows = {(r["target"], r["scheme"]): r for r in report["results"]}
    assert rows[("cpu-openvino", "w8a8")]["runtime"]["graph_rewrites"]["on_codes"] > 0
    for target in ("cpu-ort", "cpu-openvino"):
        assert rows[(target, "w8a8")]["max_lsb_vs_int_reference"] <= 8


def test_video_demo_writes_mp4_gif_and_html(tmp_path):
    """The demo with no argument but its output folder: the shipped P3D on a generated clip,
    the page opened in headless Chromium."""
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'convdeploy[video]')")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    import shutil

    out = tmp_path / "demo"
    res = cli("video-demo", "--max-windows", "6", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "float/int8 agreement" in res.stdout and "clips/s" in res.stdout
    summary = json.loads((out / "demo.json").read_text())
    assert summary["windows"] == 6 and summary["target"] == "mobile-litert"
    for name in ("demo.mp4", "demo.gif", "demo.html"):
        assert (out / name).stat().st_size > 1000, name
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no screenshot")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1000,900",
                    (out / "demo.html").as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    res = cli("video-demo", "--model", "digits-convnet", "--out", tmp_path / "x")
    assert res.returncode == 2 and "not a video model" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x").exists()
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    res = cli("video-demo", tmp_path / "junk.mp4", "--out", tmp_path / "y")
    assert res.returncode == 2 and "cannot read video" in res.stderr and "junk.mp4" in res.stderr
    assert "skip-bad-files" not in res.stderr and not (tmp_path / "y").exists()


def test_debug_shows_the_traceback(tmp_path):
    res = cli("--debug", "export", "no-such-model", "--out", tmp_path / "o")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    res = cli("export", "--out", out, *FAST)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (out / "mine.txt").read_text() == "precious"


def test_targets_command_says_what_each_target_cannot_run_of_a_model():
    res = cli("targets", "--model", "digits-convnet", "--scheme", "w4a8")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    assert lines["cpu-ort"].split()[1] == "runs"
    assert lines["int-reference"].split()[1] == "runs"
    if "unavailable" not in lines["mobile-litert"]:
        assert "no 4-bit weights" in lines["mobile-litert"] and "w8a8" in lines["mobile-litert"]


def test_targets_command_lists_availability():
    res = cli("targets")
    assert res.returncode == 0
    for name in ("reference", "cpu-ort", "cpu-openvino"):
        assert name in res.stdout


def test_targets_command_says_why_the_gpu_targets_cannot_run_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    res = cli("targets")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    for name in ("gpu-triton", "gpu-triton-im2win", "gpu-torch", "gpu-torch-fp16"):
        assert "unavailable: no CUDA device" in lines[name], lines[name]


def test_float_only_export_of_a_fixed_batch_pt2_program(tmp_path):
    """A .pt2 saved with batch 1 still runs at any batch; without --int8 only float rows."""
    import numpy as np

    program = torch.export.export(seeded_tiny_net(), (torch.randn(1, 3, 16, 16),))
    torch.export.save(program, tmp_path / "net.pt2")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (24, 16, 16, 3), dtype=np.uint8))
    res = cli("export", tmp_path / "net.pt2", "--calib", tmp_path / "d.npz", "--eval",
              tmp_path / "d.npz", "--targets", "cpu-ort", "--out", tmp_path / "o", *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert {r["scheme"] for r in report["results"]} == {"float"}
    assert report["float"]["accuracy"] is None  # no labels in the .npz
    assert all(r["top1_agreement"] == 1.0 for r in report["results"])


def test_w4a8_with_chosen_ptq_methods(tmp_path):
    out = tmp_path / "out"
    res = cli("export", "--scheme", "w4a8", "--ptq", "cle,adaround,bias-correction",
              "--adaround-iters", "30", "--targets", "cpu-ort", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    label = "w4a8+cle+adaround+bias-correction"
    assert report["scheme"]["label"] == label and report["scheme"]["weights"]["bits"] == 4
    assert set(report["scheme"]["ptq"]) == {"cle", "adaround", "bias-correction"}
    rows = {(r["target"], r["scheme"]): r for r in report["results"]}
    assert rows[("cpu-ort", label)]["weight_container"] == "int8"
    assert rows[("cpu-ort", label)]["runtime"]["integer_kernels"]["QLinearConv"] == 4
    assert rows[("cpu-ort", label + "+int4-file")]["weight_container"] == "int4"
    sizes = {a["name"]: a["size_bytes"] for a in report["artifacts"]}
    assert sizes["model.w4a8.int4"] < sizes["model.w4a8"] < sizes["model.float"]
    for target, scheme in rows:
        if scheme != "float":
            assert abs(rows[(target, scheme)]["accuracy"] - report["float"]["accuracy"]) < 0.05


def test_qat_command_reports_and_resumes(tmp_path):
    out = tmp_path / "out"
    args = ["qat", "--scheme", "w4a8", "--ptq", "none", "--epochs", "1", "--targets", "cpu-ort",
            "--out", out, *FAST]
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"]["label"] == "w4a8+qat"
    assert len(report["scheme"]["qat"]["history"]) == 1
    checkpoint = tmp_path / "out.qat-checkpoint.pt"
    assert checkpoint.is_file()
    again = cli(*args, "--overwrite")  # same run: resumed from the finished checkpoint
    assert again.returncode == 0, again.stderr
    assert "resuming QAT" in again.stdout


def test_inspect_names_the_most_sensitive_layers(tmp_path):
    res = cli("inspect", "--scheme", "w4a8", "--ptq", "none", "--eval-limit", "100",
              "--calib-size", "64", "--no-progress", "--json", tmp_path / "s.json")
    assert res.returncode == 0, res.stderr
    assert "most sensitive:" in res.stdout and "--override" in res.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert len(data["layers"]) == 5 and len(data["worst"]) == 5


@pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) is None
                        for m in ("ai_edge_litert", "onnxruntime_qnn")),
                    reason="the mobile extra is not installed (pip install 'convdeploy[mobile]')")
def test_mobile_and_dsp_targets_in_one_report(tmp_path):
    out = tmp_path / "out"
    res = cli("export", "--int8", "--targets", "int-reference,mobile-litert,mobile-litert-ref,"
              "dsp-qnn-htp", "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {(r["target"], r["scheme"]): r for r in report["results"]}
    assert ("dsp-qnn-htp", "float") not in rows  # the HTP runs quantized models only
    assert rows[("mobile-litert-ref", "w8a8")]["max_lsb_vs_int_reference"] == 0
    assert rows[("mobile-litert-ref", "w8a8")]["bit_exact_fraction"] == 1.0
    for target in ("mobile-litert", "dsp-qnn-htp"):
        r = rows[(target, "w8a8")]
        assert r["max_lsb_vs_int_reference"] <= 8
        assert abs(r["accuracy"] - rows[("reference", "w8a8")]["accuracy"]) <= 0.02
    assert rows[("mobile-litert", "float")]["sqnr_db"] > 80
    assert "emulated" in rows[("dsp-qnn-htp", "w8a8")]["latency_ms"]["not_measured"]
    assert {"model.float.tflite", "model.w8a8.tflite"} <= {p.name for p in out.iterdir()}
    assert "LSB vs int-ref" in (out / "report.md").read_text()


def test_qat_calibrates_from_the_training_data_when_no_calib_is_given(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", x=rng.integers(0, 255, (48, 16, 16, 3), dtype=np.uint8),
             y=rng.integers(0, 5, 48))
    data = tmp_path / "train.npz"
    res = cli("qat", "tests.conftest:seeded_tiny_net", "--int8", "--train", data, "--eval", data,
              "--targets", "cpu-ort", "--epochs", "1", "--out", tmp_path / "o", *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["data"]["calib"]["source"].endswith("train.npz")


def test_a_one_channel_float_npz_needs_no_mean_std(tmp_path):
    import numpy as np

    (tmp_path / "audio.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, (5, 1), padding=(2, 0)), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "sig.npz", x=rng.standard_normal((24, 1, 64, 1)).astype(np.float32),
             y=rng.integers(0, 2, 24))
    res = cli("export", "audio:build", "--int8", "--calib", "sig.npz", "--eval", "sig.npz",
              "--targets", "cpu-ort", "--out", "o", *FAST, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["data"]["preprocess"]["channels"] == 1


def test_a_truncated_image_stops_the_run_by_name_or_is_skipped_and_counted(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.jpg", quality=95)
    whole = (tmp_path / "imgs" / "a" / "0.jpg").read_bytes()
    (tmp_path / "imgs" / "a" / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    args = ["export", "tests.conftest:seeded_tiny_net", "--int8", "--calib", tmp_path / "imgs",
            "--eval", tmp_path / "imgs", "--targets", "cpu-ort", *FAST]
    res = cli(*args, "--out", tmp_path / "o1")
    assert res.returncode == 2 and "cut.jpg" in res.stderr and "--skip-bad-files" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli(*args, "--skip-bad-files", "--out", tmp_path / "o2")
    assert res.returncode == 0, res.stderr
    assert "skipped 1 unreadable" in res.stdout
    report = json.loads((tmp_path / "o2" / "report.json").read_text())
    assert report["data"]["eval"]["skipped_files"] == 1


def test_a_video_model_of_your_own_through_the_import_path(tmp_path):
    """A user's video model (``package.module:factory``): a 5-D .npz says its frames and size;
    a folder of clips needs --frames, and without it the message says so."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "clips.npz", x=rng.integers(0, 255, (24, 6, 16, 16, 3), dtype=np.uint8),
             y=np.arange(24) % 3)
    out = tmp_path / "out"
    res = cli("export", "convdeploy.models.video_motion:p3d", "--int8", "--calib",
              tmp_path / "clips.npz", "--eval", tmp_path / "clips.npz", "--targets", "cpu-ort",
              "--out", out, *FAST)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["preprocess"]["frames"] == 6
    assert report["data"]["preprocess"]["size"] == [16, 16]
    av = pytest.importorskip("av", reason="PyAV is not installed")
    assert av
    from convdeploy.models.clips import write_clip

    (tmp_path / "folder" / "a").mkdir(parents=True)
    write_clip(tmp_path / "folder" / "a" / "0.mp4",
               rng.integers(0, 255, (8, 16, 16, 3), dtype=np.uint8))
    res = cli("export", "convdeploy.models.video_motion:p3d", "--int8", "--calib",
              tmp_path / "folder", "--eval", tmp_path / "folder", "--out", tmp_path / "o2", *FAST)
    assert res.returncode == 2 and "--frames T" in res.stderr and "Traceback" not in res.stderr
    res = cli("export", "convdeploy.models.video_motion:p3d", "--frames", "4", "--calib",
              tmp_path / "folder", "--eval", tmp_path / "folder", "--targets", "cpu-ort",
              "--out", tmp_path / "o3", *FAST)
    assert res.returncode == 0, res.stderr
