"""The sweep's time-left estimate: per kind, model and target, divided by each phase's lanes."""
from dataclasses import dataclass

from convdeploy.audit.progress import TimeLeft, _duration, unit_seconds


@dataclass(frozen=True)
class Model:
    label: str


@dataclass(frozen=True)
class Source:
    model: Model
    kind: str = "quantize"


@dataclass(frozen=True)
class Unit:
    kind: str
    source: Source
    target: str
    n: int = 0


def _unit(kind, model, target, n=0):
    return Unit(kind, Source(Model(model)), target, n)


def test_estimate_uses_the_most_specific_finished_peers_and_the_phase_lanes():
    slow = [_unit("accuracy", "resnet56", "dsp-qnn-htp", i) for i in range(3)]
    fast = [_unit("accuracy", "resnet56", "cpu-ort", i) for i in range(3)]
    timed = [_unit("latency", "resnet56", "cpu-ort", i) for i in range(4)]
    eta = TimeLeft(slow + fast + timed, workers=2)
    assert eta.seconds() == (0.0, 10)
    assert eta.text() == "time left: estimated once a unit of each kind finishes"
    eta.finished(slow[0], 1800.0)  # an HTP unit: half an hour
    eta.finished(fast[0], 10.0)
    eta.finished(timed[0], 12.0)
    # accuracy: 2 x 1800 + 2 x 10 over 2 workers; latency: 3 x 12 one at a time
    assert eta.seconds() == ((2 * 1800 + 2 * 10) / 2 + 3 * 12, 0)
    assert eta.text() == "~30m46s left"
    # another model's HTP unit falls back to (kind, target), not to the cpu-ort mean
    other = _unit("accuracy", "resnet20", "dsp-qnn-htp")
    eta = TimeLeft([other], workers=2)
    eta.finished(slow[0], 1800.0)
    eta.finished(fast[0], 10.0)
    assert eta.seconds() == (1800.0, 0)


def test_units_without_a_finished_peer_are_counted_not_guessed():
    a, b = _unit("accuracy", "m", "cpu-ort"), _unit("latency", "m", "cpu-ort")
    eta = TimeLeft([a, b], workers=4)
    eta.finished(_unit("accuracy", "m", "cpu-ort", 9), 5.0)  # from an earlier run's cells
    assert eta.seconds() == (5.0, 1)
    assert eta.text() == "~5s left (+1 units not yet estimated)"
    eta.finished(a, None)  # failed: no duration, but no longer left
    eta.finished(b, 3.0)
    assert eta.text() == "" and eta.seconds() == (0.0, 0)


def test_durations_of_old_cells_and_formatting():
    assert unit_seconds({"unit_seconds": 2.5, "eval_seconds": 9}) == 2.5
    assert unit_seconds({"eval_seconds": 9}) == 9.0
    assert unit_seconds({"status": "failed"}) is None
    assert [_duration(s) for s in (59.4, 61, 3600 * 2 + 65)] == ["59s", "1m01s", "2h01m"]
