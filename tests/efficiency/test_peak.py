"""The peak microbenchmark's models and its per-machine cache (no timing asserted)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from convdeploy.efficiency import peak as peak_mod
from convdeploy.efficiency.peak import Peak, _conv_model, peak_for


def test_the_int8_micro_conv_runs_as_one_integer_kernel(tmp_path):
    import onnx

    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.targets import registry

    target = registry.get("cpu-ort")
    model, macs = _conv_model(16, 8, 3, "int8")
    assert macs == 16 * 16 * 9 * 8 * 8
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    runnable = target.compile(Artifact("m", ArtifactFormat.ONNX, "w8a8", path=path), tmp_path)
    assert runnable.details["integer_kernels"] == {"QLinearConv": 1}
    assert runnable.details["float_convs"] == 0


@pytest.mark.parametrize("dtype", ["float", "int8"])
def test_the_pointwise_pair_chain_alternates_expansion_and_projection(dtype, tmp_path):
    """C -> 6C -> C -> ...: every conv has the same MACs, the chain's shapes hold (ORT runs it),
    and the int8 one is integer kernels only."""
    import onnx

    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.targets import registry

    model, macs = _conv_model(8, 4, 1, dtype, chain=3, expand=6)
    assert macs == 8 * 48 * 4 * 4
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    weights = [n.input[1] for n in convs]
    assert len(convs) == 3 and weights[0] != weights[1] and \
        (weights[0] == weights[2] if dtype == "float" else True)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    runnable = registry.get("cpu-ort").compile(
        Artifact("m", ArtifactFormat.ONNX, dtype, path=path), tmp_path)
    out = runnable({"input": np.ones((2, 8, 4, 4), np.float32)})
    assert next(iter(out.values())).shape == (2, 48, 4, 4)
    if dtype == "int8":
        assert runnable.details["integer_kernels"] == {"QLinearConv": 3}


def test_the_micro_models_are_written_for_litert(tmp_path):
    pytest.importorskip("ai_edge_litert")
    import onnx

    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.exporters.tflite_export import TfliteExporter

    for dtype in ("float", "int8"):
        model, _ = _conv_model(16, 8, 3, dtype)
        path = tmp_path / f"{dtype}.onnx"
        onnx.save(model, str(path))
        art = TfliteExporter().export(Artifact(dtype, ArtifactFormat.ONNX, dtype, path=path),
                                      tmp_path)
        assert art.path.stat().st_size > 16 * 16 * 9


def test_peaks_are_cached_per_machine_runtime_dtype_and_threads(tmp_path, monkeypatch):
    from convdeploy.targets import registry

    calls = []

    def fake(target, dtype, threads):
        calls.append((target.name, dtype, threads))
        return Peak(10.0 * len(calls), ((1e4, 50.0), (math.inf, 5.0)), "measured (fake)")

    monkeypatch.setattr(peak_mod, "measure_peak", fake)
    cache = tmp_path / "peaks.json"
    target = registry.get("cpu-ort")
    first = peak_for(target, "int8", 1, cache=cache)
    assert peak_for(target, "int8", 1, cache=cache) == first  # read back, not measured
    assert peak_for(target, "int8", 2, cache=cache).gmacs == 20.0  # threads: another entry
    assert peak_for(target, "int8", 1, cache=cache, refresh=True).gmacs == 30.0
    assert calls == [("cpu-ort", "int8", 1), ("cpu-ort", "int8", 2), ("cpu-ort", "int8", 1)]
    keys = json.loads(cache.read_text())
    assert len(keys) == 2 and all(peak_mod.machine_key() in k and "cpu-ort" in k for k in keys)
    assert first.gbytes(1e3) == 50.0 and first.gbytes(1e6) == 5.0


def test_the_fastest_shapes_are_timed_again_and_keep_their_best(monkeypatch):
    """One pass is noisy: the RECHECKED fastest shapes are timed RECHECKS times more and the
    peak is the best any of them reached; the slower shapes are timed once."""
    from convdeploy.targets import registry

    calls: dict[tuple, int] = {}

    def chain(target, dtype, threads, key, workdir):
        calls[key] = calls.get(key, 0) + 1
        base = {(256, 14, 3, 1, 8): 100.0, (64, 8, 3, 1, 32): 99.0}.get(key, 50.0)
        return base + (5.0 if key == (64, 8, 3, 1, 32) and calls[key] == 3 else 0.0)

    monkeypatch.setattr(peak_mod, "_chain_gmacs", chain)
    monkeypatch.setattr(peak_mod, "_time_model", lambda *a, **k: 1.0)
    monkeypatch.setattr(peak_mod, "_numpy_add_ms",
                        lambda threads: {n: 1.0 for n in peak_mod.ADD_SIZES})
    p = peak_mod.measure_peak(registry.get("cpu-ort"), "float", 1)
    assert p.gmacs == 104.0 and "conv 64x8x8 k3, batch 32" in p.source
    rechecked = sorted(k for k, n in calls.items() if n > 1)
    assert len(rechecked) == peak_mod.RECHECKED
    assert {calls[k] for k in rechecked} == {1 + peak_mod.RECHECKS}
    assert set(calls.values()) == {1, 1 + peak_mod.RECHECKS}
