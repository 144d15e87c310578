"""Latency figures: at least ``repeats`` timed runs over at least ``min_time_s`` seconds."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convdeploy.audit import parse_spec
from convdeploy.config import MeasureConfig
from convdeploy.configfile import SpecError
from convdeploy.latency import disturbed, time_runs


class Sleeper:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, inputs):
        self.calls += 1
        time.sleep(0.002)


def test_the_time_floor_adds_runs_beyond_repeats():
    fast = Sleeper()
    t = time_runs(fast, {"x": np.zeros(1)}, warmup=2, repeats=3, min_time_s=0.2)
    assert t["runs"] == fast.calls - 2 and 40 <= t["runs"] <= 100  # ~2 ms each
    assert t["median"] >= 2.0
    once = Sleeper()
    assert time_runs(once, {"x": np.zeros(1)}, warmup=0, repeats=3)["runs"] == 3 == once.calls


def test_min_time_is_validated_in_both_configs():
    with pytest.raises(ValueError, match="min_time_s"):
        MeasureConfig(min_time_s=-1.0)
    tree = {"models": ["digits-convnet"], "schemes": ["w8a8"], "targets": ["cpu-ort"]}
    assert parse_spec(tree).min_time_s == 1.0
    assert parse_spec({**tree, "min_time_s": 2}).min_time_s == 2.0
    with pytest.raises(SpecError, match="'min_time_s' must be 0 or more"):
        parse_spec({**tree, "min_time_s": -0.5})
    with pytest.raises(SpecError, match="min_time_s"):
        parse_spec({**tree, "min_time_s": "long"})


def test_load_since_counts_other_processes_cpu_not_this_ones(monkeypatch):
    from convdeploy import latency

    # 2 s of wall clock: the machine was busy 10 CPU-seconds, 1.5 of them this process's,
    # and the hypervisor stole 0.2
    monkeypatch.setattr(latency, "load_snapshot", lambda: (12.0, 5.5, 110.0, 3.0))
    load = latency.load_since((10.0, 4.0, 100.0, 2.8))
    assert load == {"other_cpu_cores": 4.25, "steal_cpu_cores": 0.1}
    assert latency.disturbed(load)
    assert not latency.disturbed({"other_cpu_cores": 0.05, "steal_cpu_cores": 0.0})
    assert not latency.disturbed({})  # off Linux: nothing measured, nothing claimed
    assert latency.load_since(None) == {}


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_a_busy_neighbour_is_seen_in_the_timing():
    spin = "import time\nt = time.time()\nwhile time.time() - t < 4:\n    pass\n"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)  # let it start
        t = time_runs(Sleeper(), {"x": np.zeros(1)}, warmup=0, repeats=3, min_time_s=1.0)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert t["other_cpu_cores"] >= 0.5, t  # the spinning process held about one core
    assert disturbed(t)


def test_disturbed_latencies_are_marked_in_report_and_audit_tables():
    from convdeploy.audit.outputs import disturbed_note, table_rows
    from convdeploy.report import Report

    lat = {"batch1_median": 1.0, "per_image_at_batch_ms": 0.5}
    rows = [{"target": t, "scheme": "w8a8", "top1_agreement": 1.0, "accuracy": 0.9,
             "latency_ms": {**lat, "other_cpu_cores": cores, "steal_cpu_cores": 0.0}}
            for t, cores in (("cpu-ort", 0.01), ("cpu-openvino", 0.9))]
    report = Report(model="m", float={"accuracy": 0.9, "accuracy_ci95": [0.8, 0.95]},
                    results=rows)
    table = report.table()
    assert "1.00*" in table and table.count("*") == 2  # the cell and its footnote
    assert "up to 0.90 CPU cores" in table and "0.90 CPU cores" in report.markdown()
    cells = [{"model": "m", "scheme": "w8a8", "target": t, "status": "ok", "threads": 1,
              "batch_size": 1, "latency_median_ms": 1.0, "other_cpu_cores": cores}
             for t, cores in (("cpu-ort", 0.0), ("cpu-openvino", 0.5))]
    assert [r[10] for r in table_rows(cells)] == ["1.000", "1.000*"]
    assert disturbed_note(cells).startswith("* 1 of 2 latency cells")
    assert disturbed_note(cells[:1]) is None
