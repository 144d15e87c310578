"""Latency figures: at least ``repeats`` timed runs over at least ``min_time_s`` seconds."""
import time

import numpy as np
import pytest

from convdeploy.audit import parse_spec
from convdeploy.config import MeasureConfig
from convdeploy.configfile import SpecError
from convdeploy.latency import time_runs


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
