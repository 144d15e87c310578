import math
import subprocess
import sys

import numpy as np
import pytest

from convdeploy.check import lsb_distance, sqnr_db, wilson_interval
from convdeploy.errors import ConvdeployError
from convdeploy.files import staged_directory


def test_failed_run_leaves_existing_output_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(out, overwrite=True) as stage:
            (stage / "report.json").write_text("half")
            raise RuntimeError("crash in the middle")
    assert (out / "report.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging debris


def test_existing_output_needs_overwrite_then_is_swapped_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with pytest.raises(ConvdeployError, match="--overwrite"):
        with staged_directory(out):
            pass
    with staged_directory(out, overwrite=True) as stage:
        (stage / "report.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_wilson_interval_known_values():
    acc = wilson_interval(81, 100)
    assert acc.value == 0.81
    assert math.isclose(acc.ci95_low, 0.7222, abs_tol=1e-3)
    assert math.isclose(acc.ci95_high, 0.8749, abs_tol=1e-3)


def test_sqnr_and_lsb_distance():
    ref = np.array([1.0, -2.0, 3.0])
    assert sqnr_db(ref, ref) is None
    assert math.isclose(sqnr_db(ref, ref + 0.1), 10 * math.log10(14 / 0.03), rel_tol=1e-9)
    d = lsb_distance(ref, ref + np.array([0.0, 0.5, 1.0]), 0.5)
    assert d["max"] == 2.0 and d["exact_fraction"] == pytest.approx(1 / 3)


def test_import_convdeploy_is_light():
    """DESIGN rule 4: heavy runtimes load only inside their target."""
    code = ("import sys, convdeploy, convdeploy.cli, convdeploy.config, convdeploy.targets.registry;"
            "heavy=[m for m in ('onnxruntime','openvino','onnx','tensorflow') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
