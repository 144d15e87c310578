"""Audits end to end on the embedded demo model: outputs, sharing, reuse, and a sweep killed
mid-run that resumes without recomputing a finished unit and ends equal to an uninterrupted
one. Real processes, real runtimes, no mocks."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from convdeploy.audit import parse_spec, run_audit

TREE = {"models": ["digits-convnet"], "schemes": ["float", "w8a8"], "targets": ["cpu-ort"],
        "data": {"eval_limit": 200, "calib_size": 64}, "threads": [1, 2], "batch_sizes": [1],
        "repeats": 5, "min_time_s": 0, "warmup": 1, "workers": 2, "bootstrap": 500}

# what may differ between two runs of the same spec: timings, where they ran
VOLATILE = ("latency_median_ms", "latency_p90_ms", "latency_min_ms", "per_image_ms",
            "speedup_vs_float", "pareto", "node", "eval_seconds", "quantize_seconds",
            "torch_threads", "runtime", "other_cpu_cores", "steal_cpu_cores")


def stable(cells):
    return [{k: v for k, v in c.items() if k not in VOLATILE} for c in cells]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    return run_audit(parse_spec(TREE), out, progress=False), out


def test_cells_cover_the_sweep_and_share_work(finished):
    audit, out = finished
    # 2 quantize units, 2 targets' accuracy + the integer reference, 2 x 2 latency cells
    assert audit.computed == {"quantize": 2, "accuracy": 3, "latency": 4}
    assert audit.failed == 0
    timed = [c for c in audit.cells if c["target"] == "cpu-ort"]
    assert sorted((c["scheme"], c["threads"]) for c in timed) == [
        ("float", 1), ("float", 2), ("w8a8", 1), ("w8a8", 2)]
    for c in timed:
        assert c["status"] == "ok" and c["samples"] == 200 and c["latency_median_ms"] > 0
        assert c["batch_size"] == 1 and c["latency_runs"] == 5
    w8a8 = [c for c in timed if c["scheme"] == "w8a8"]
    assert w8a8[0]["accuracy"] == w8a8[1]["accuracy"]  # one accuracy unit, shared
    assert w8a8[0]["max_lsb_vs_int_reference"] <= 8
    assert 0 <= w8a8[0]["mcnemar_p"] <= 1 and "float" in w8a8[0]["verdict"]
    oracle = next(c for c in audit.cells if c["target"] == "int-reference")
    assert oracle["max_lsb_vs_int_reference"] == 0 and "oracle" in oracle["latency_note"]
    assert any(c.get("pareto") for c in audit.cells)
    for name in ("audit.json", "cells.csv", "audit.md", "audit.html"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "audit.json").read_text())
    assert len(data["cells"]) == len(audit.cells) and data["pareto"]
    assert data["fingerprints"]["environment"]["versions"]["onnxruntime"]


def test_a_rerun_reuses_every_unit(finished):
    audit, out = finished
    again = run_audit(parse_spec(TREE), out, progress=False)
    assert sum(again.computed.values()) == 0
    assert again.reused == {"quantize": 2, "accuracy": 3, "latency": 4}
    assert stable(again.cells) == stable(audit.cells)


def test_a_changed_spec_reuses_what_it_shares(finished, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished[1], out)  # the module's audit folder stays as it was
    again = run_audit(parse_spec({**TREE, "threads": [1]}), out, progress=False)
    assert sum(again.computed.values()) == 0 and again.reused["latency"] == 2
    more = run_audit(parse_spec({**TREE, "repeats": 6, "threads": [1]}), out, progress=False)
    assert more.computed == {"quantize": 0, "accuracy": 0, "latency": 2}


def test_a_failing_target_is_recorded_and_the_sweep_goes_on(tmp_path):
    """A model the integer path cannot lower: int-reference records why; cpu-ort still runs."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8),
             y=rng.integers(0, 10, 64))
    tree = {**TREE, "schemes": ["w8a8"], "threads": [1],
            "data": {"calib": str(tmp_path / "d.npz"), "eval": str(tmp_path / "d.npz")}}
    tree["models"] = ["tests.audit.models:erf_net"]
    audit = run_audit(parse_spec(tree), tmp_path / "out", progress=False)
    by_target = {c["target"]: c for c in audit.cells}
    assert by_target["cpu-ort"]["status"] == "ok"
    assert by_target["int-reference"]["status"] == "failed"
    assert by_target["int-reference"]["reason"]


def _cells_on_disk(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}


def test_a_killed_sweep_resumes_without_recomputing(tmp_path, finished):
    reference, _ = finished
    out = tmp_path / "killed"
    spec_file = tmp_path / "spec.json.yaml"
    spec_file.write_text(json.dumps(TREE))  # JSON is YAML
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "convdeploy.cli", "audit", str(spec_file),
                             "--out", str(out), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(_cells_on_disk(out) if out.exists() else {}) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its pool workers, mid-run
    proc.wait()
    before = _cells_on_disk(out)
    assert 3 <= len(before) < 9, f"the kill came too late to test a resume: {len(before)}"
    resumed = run_audit(parse_spec(TREE), out, progress=False)
    assert sum(resumed.reused.values()) == len(before)
    assert sum(resumed.computed.values()) == 9 - len(before)
    after = _cells_on_disk(out)
    assert all(after[name] == mtime for name, mtime in before.items())  # none rewritten
    assert stable(resumed.cells) == stable(reference.cells)


def test_the_html_page_is_self_contained_and_every_figure_renders(finished, tmp_path):
    import base64
    import io
    import re
    import shutil

    import numpy as np
    from PIL import Image

    _, out = finished
    page = (out / "audit.html").read_text()
    assert "src='http" not in page and "<script" not in page  # one file, nothing fetched
    figures = re.findall(r"id='fig-([a-z_]+)' alt='[a-z_]+' src='data:image/png;base64,([^']+)'",
                         page)
    assert [name for name, _ in figures] == ["accuracy_vs_latency", "size_vs_accuracy",
                                             "speedup", "thread_scaling"]
    for name, data in figures:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))
        assert img.shape[0] > 200 and img.shape[1] > 200, name
        assert img.std() > 5, f"figure {name} is blank"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no screenshot")
    shot = tmp_path / "audit.png"
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--hide-scrollbars", "--window-size=1400,3600",
                          f"--screenshot={shot}", (out / "audit.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (3600, 1400)
    # the figures are in the page: a screenshot of text alone is almost all white
    assert (pixels < 200).mean() > 0.02, "the screenshot shows no figure"


def test_a_video_model_is_audited_in_both_forms(tmp_path):
    """A video model's cells (clips rebuilt from the quantize unit's record: frames included),
    and its (2+1)D form beside the 5-D one on the same runtime, each under its own label."""
    pytest.importorskip("sklearn", reason="the default clips come from scikit-learn's photos")
    tree = {"models": ["p3d-motion", {"name": "p3d-motion", "conv3d_as_2d": True}],
            "schemes": ["w8a8"], "targets": ["cpu-ort"],
            "data": {"eval_limit": 16, "calib_size": 16}, "threads": [1], "batch_sizes": [1],
            "repeats": 2, "min_time_s": 0, "warmup": 1, "workers": 1, "bootstrap": 100}
    audit = run_audit(parse_spec(tree), tmp_path, progress=False)
    assert audit.failed == 0
    timed = {c["model"]: c for c in audit.cells if c["target"] == "cpu-ort"}
    assert set(timed) == {"p3d-motion", "p3d-motion (2-D form)"}
    for c in timed.values():
        assert c["status"] == "ok" and c["samples"] == 16 and c["latency_median_ms"] > 0
    # the same model and encodings up to calibration's float rounding: equal calls
    assert abs(timed["p3d-motion"]["accuracy"] - timed["p3d-motion (2-D form)"]["accuracy"]) \
        <= 1 / 16 + 1e-9


def test_profiled_cells_carry_the_per_layer_view_and_the_page_shows_it(tmp_path, monkeypatch):
    """``profile: true``: each latency cell on a profiling target gets its waterline and
    per-layer table, the page its efficiency-gap and waterline figures. Peaks are seeded in
    the cache (no microbenchmark here: timings are never tested)."""
    from convdeploy.efficiency import peak as P
    from convdeploy.targets import registry

    cache = tmp_path / "cache"
    monkeypatch.setenv("CONVDEPLOY_CACHE", str(cache))
    for name in ("cpu-ort", "mobile-litert"):
        target = registry.get(name)
        if target.unavailable():
            pytest.skip(target.unavailable())
        for dtype in ("float", "int8"):
            key = (f"v{P.CACHE_VERSION}|{P.machine_key()}|{name} {P._runtime_version(target)}"
                   f"|{dtype}|1")
            entries = json.loads(P.cache_path().read_text()) if P.cache_path().exists() else {}
            entries[key] = {"gmacs": 100.0, "bandwidth": [[1e9, 20.0]], "source": "seeded"}
            P.cache_path().parent.mkdir(parents=True, exist_ok=True)
            P.cache_path().write_text(json.dumps(entries))
    tree = {**TREE, "targets": ["cpu-ort", "mobile-litert"], "threads": [1], "profile": True}
    audit = run_audit(parse_spec(tree), tmp_path / "a", progress=False)
    timed = [c for c in audit.cells if c.get("latency_status") == "ok"]
    assert len(timed) == 4 and audit.failed == 0
    for c in timed:
        eff = c["efficiency"]
        assert c["waterline_ms"] == pytest.approx(eff["waterline_ms"])
        assert c["waterline_ms"] > 0
        assert eff["latency_ms"] == pytest.approx(c["latency_median_ms"])
        convs = [r for r in eff["layers"] if r["op"] == "Conv"]
        assert len(convs) == 4 and all(r["kernels"] for r in convs)
        assert eff["peaks"]["float"]["source"] == "seeded"
    page = (tmp_path / "a" / "audit.html").read_text()
    assert "Where the time goes" in page
    assert page.count("id='fig-waterline-digits-convnet-") == 2
    assert "id='fig-gap-digits-convnet'" in page
    assert "waterline_ms" in (tmp_path / "a" / "cells.csv").read_text().splitlines()[0]
