"""Per-layer profiles on the runtimes that have them: every weighted layer of the tiny model is
mapped to a kernel, in the precision the runtime ran; LiteRT's one-op cuts compute exactly what
the op computes inside the whole model. Structure only: timings are never asserted beyond
sanity ranges."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from convdeploy.efficiency.peak import Peak
from convdeploy.efficiency.profile import profile_artifact
from convdeploy.targets import registry
from tests.artifacts import tiny_artifacts, tiny_tflite_artifacts

GIVEN = {"float": Peak(100.0, ((math.inf, 20.0),), "given"),
         "int8": Peak(200.0, ((math.inf, 20.0),), "given")}
WEIGHTED = {"stem.0", "dw.0", "down.0", "fc"}


def _target(name):
    target = registry.get(name)
    if target.unavailable():
        pytest.skip(target.unavailable())
    return target


@pytest.mark.parametrize("name", ["cpu-ort", "cpu-openvino", "mobile-litert"])
@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_every_weighted_layer_is_mapped(name, quantized, tmp_path: Path):
    target = _target(name)
    onnx_art = tiny_artifacts()[quantized]
    art = tiny_tflite_artifacts()[quantized] if name == "mobile-litert" else onnx_art
    p = profile_artifact(art, onnx_art.path, target, tmp_path, threads=1, batch=2, runs=5,
                         warmup=2, min_time_s=0.05, peaks=GIVEN, model="tiny")
    rows = {r.layer: r for r in p.layers}
    assert WEIGHTED <= {r.layer for r in p.layers if r.kernels}, rows.keys()
    assert not [w for w in p.warnings if "no " in w and "kernel was mapped" in w]
    convs = [rows[x] for x in ("stem.0", "dw.0", "down.0")]
    assert {r.dtype for r in convs} == {"int8" if quantized else "float"}
    assert all(r.macs > 0 and r.bound_ms > 0 and r.efficiency is not None for r in convs)
    assert p.batch == 2 and rows["stem.0"].macs == 2 * 8 * 16 * 16 * 27
    assert p.attributed_ms + p.unattributed_ms == pytest.approx(p.latency_ms)


def _tiny_int8_litert_run(seed: int):
    """The tiny int8 .tflite parsed, and run once on random input keeping every tensor."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    data = tiny_tflite_artifacts()[1].path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    whole = Interpreter(model_content=data, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    (inp,) = whole.get_input_details()
    x = np.random.default_rng(seed).random(inp["shape"], dtype=np.float32)
    whole.set_tensor(inp["index"], x)
    whole.invoke()
    return schema, model, whole, x


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_litert_isolated_cuts_equal_their_ops_inside_the_model():
    """Each fusion group (an op alone, or a stride-2 conv with the PAD it reads, which XNNPACK
    folds together) cut out as a model computes exactly its tensor inside the whole model."""
    target = _target("mobile-litert")
    from ai_edge_litert.interpreter import Interpreter

    from convdeploy.targets.litert_isolated import fusion_groups, group_model

    schema, model, whole, _ = _tiny_int8_litert_run(seed=0)
    sub = model.subgraphs[0]
    groups = fusion_groups(model, schema)
    assert [i for g in groups for i in g] == list(range(len(sub.operators)))
    pairs = [g for g in groups if len(g) == 2]
    assert pairs, "the tiny model's stride-2 conv has an explicit PAD"
    for g in pairs:
        assert sub.operators[g[1]].inputs[0] == sub.operators[g[0]].outputs[0]
    cuts = [(g, group_model(model, g, schema)) for g in groups]
    cuts += [([i], group_model(model, [i], schema)) for i in range(len(sub.operators))]
    for group, content in cuts:
        one = Interpreter(model_content=content)
        one.allocate_tensors()
        made = {t for i in group for t in sub.operators[i].outputs}
        feeds = [t for i in group for t in sub.operators[i].inputs if t >= 0 and t not in made
                 and not (sub.tensors[t].buffer and model.buffers[sub.tensors[t].buffer].data
                          is not None and len(model.buffers[sub.tensors[t].buffer].data))]
        assert len(one.get_input_details()) == len(feeds)
        for d, t in zip(one.get_input_details(), feeds):
            one.set_tensor(d["index"], whole.get_tensor(t))
        one.invoke()
        (out,) = one.get_output_details()  # a PAD fused with its conv is no output
        np.testing.assert_array_equal(one.get_tensor(out["index"]),
                                      whole.get_tensor(sub.operators[group[-1]].outputs[0]),
                                      err_msg=f"ops {group}")
    assert target.name == "mobile-litert"


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_litert_prefix_models_compute_what_the_model_computes_up_to_the_cut():
    """The in-context segment times come from prefixes of the model: each prefix's outputs
    are exactly the whole model's tensors that later ops (or the output) read."""
    _target("mobile-litert")
    from ai_edge_litert.interpreter import Interpreter

    from convdeploy.targets.litert_isolated import prefix_model

    schema, model, whole, x = _tiny_int8_litert_run(seed=1)
    sub = model.subgraphs[0]
    names = {sub.tensors[t].name.decode(): t for t in range(len(sub.tensors))}
    n = len(sub.operators)
    for end in range(1, n + 1):
        cut = Interpreter(model_content=prefix_model(model, end, schema))
        cut.allocate_tensors()
        (feed,) = cut.get_input_details()
        cut.set_tensor(feed["index"], x)
        cut.invoke()
        outs = cut.get_output_details()
        assert outs, end
        for d in outs:
            np.testing.assert_array_equal(cut.get_tensor(d["index"]),
                                          whole.get_tensor(names[d["name"]]),
                                          err_msg=f"prefix of {end} ops: {d['name']}")


def test_litert_segments_split_by_isolated_time_and_take_the_in_context_totals():
    from convdeploy.efficiency.timeline import KernelTime
    from convdeploy.targets.litert_isolated import _scaled, segment_ends

    assert segment_ends([1.0] * 80, list(range(80)), 80, 8) == list(range(10, 81, 10))
    assert segment_ends([5.0, 0.0, 0.0, 1.0], [0, 1, 2, 3], 4, 8) == [1, 4]  # none empty
    assert segment_ends([0.0, 0.0], [0, 1], 2, 8) == [2]
    kernels = [KernelTime(f"{i}:CONV", "CONV", ms, "int8") for i, ms in
               enumerate([0.010, 0.030, 0.020, 0.020])]
    # prefix times: none 0.002 ms, two ops 0.062 (x1.5 their isolated 0.040), all 0.082
    times = {0: 0.002, 2: 0.062, 4: 0.082}
    exact = dict.fromkeys(times, 0.0)  # no timing noise: each segment keeps its own scale
    scaled, raw, scales = _scaled(kernels, [2, 4], times, exact)
    assert raw == pytest.approx([1.5, 0.5]) and scales == pytest.approx([1.5, 0.5])
    assert [k.ms for k in scaled] == pytest.approx([0.015, 0.045, 0.010, 0.010])
    assert sum(k.ms for k in scaled) == pytest.approx(0.082 - 0.002)
    # noise that explains part of the segments' spread about the model's scale (x1.0):
    # v_i = (error_end^2 + error_start^2) / isolated^2, t = mean (r - 1)^2 - mean v
    noisy = {0: 0.0, 2: 0.01, 4: 0.01}
    v = [(0.01 ** 2) / 0.04 ** 2, 2 * (0.01 ** 2) / 0.04 ** 2]
    t = max(0.0, 0.25 - sum(v) / 2)
    scaled, raw, scales = _scaled(kernels, [2, 4], times, noisy)
    kept = [1 + t / (t + v[0]) * 0.5, 1 - t / (t + v[1]) * 0.5]
    fit = 0.080 / (kept[0] * 0.040 + kept[1] * 0.040)
    assert scales == pytest.approx([k * fit for k in kept])
    assert sum(k.ms for k in scaled) == pytest.approx(0.080)
    # noise far above the spread: both take the model's scale
    scaled, raw, scales = _scaled(kernels, [2, 4], times, dict.fromkeys(times, 0.1))
    assert raw == pytest.approx([1.5, 0.5]) and scales == pytest.approx([1.0, 1.0])
    assert [k.ms for k in scaled] == pytest.approx([k.ms for k in kernels])
    # a segment whose prefix did not grow (noise) takes the model's scale, and all ops
    # still sum to the model's time
    times = {0: 0.002, 2: 0.062, 4: 0.061}
    scaled, raw, scales = _scaled(kernels, [2, 4], times, exact)
    assert raw[1] is None and sum(k.ms for k in scaled) == pytest.approx(0.059)
    model = 0.059 / 0.080
    fit = 0.059 / (1.5 * 0.040 + model * 0.040)
    assert scales == pytest.approx([1.5 * fit, model * fit])


def test_openvino_counters_are_read_as_the_cpu_plugin_keeps_them(monkeypatch, tmp_path):
    """OpenVINO's counters: per node, the truncated mean of whole-microsecond times over every
    inference since compilation; under 1 us is NOT_RUN. The cold first inference comes out
    of the mean, executed nodes get the two truncations' expected loss (1 us), sub-microsecond
    kernels half a microsecond, inputs/outputs nothing; kernels are not scaled to latency."""
    pytest.importorskip("openvino")
    from datetime import timedelta
    from types import SimpleNamespace as NS

    from convdeploy.targets.cpu_openvino import OpenVinoCpuTarget

    status = NS(EXECUTED="E", NOT_RUN="N")

    def info(name, kind, us):
        return NS(node_name=name, node_type=kind, exec_type="jit_I8", Status=status,
                  status="E" if us >= 1 else "N", real_time=timedelta(microseconds=us))

    class Request:
        infers = 0

        def set_input_tensor(self, tensor):
            pass

        def infer(self):
            self.infers += 1

        def get_profiling_info(self):  # cold read after 1 inference, then the 1+2+5 mean
            if self.infers == 1:
                return [info("conv", "Convolution", 90), info("add", "Eltwise", 0),
                        info("input", "Parameter", 0)]
            return [info("conv", "Convolution", 20), info("add", "Eltwise", 0),
                    info("input", "Parameter", 0), info("relu", "Relu", 0)]

    def op(name, kind):
        rt = {"layerType": NS(value=kind), "execType": NS(value="jit"),
              "originalLayersNames": NS(value=name)}
        return NS(get_friendly_name=lambda: name, get_rt_info=lambda: rt)

    compiled = NS(get_runtime_model=lambda: NS(get_ops=lambda: [
        op("conv", "Convolution"), op("add", "Eltwise"), op("input", "Parameter")]),
        create_infer_request=Request)
    target = OpenVinoCpuTarget()
    monkeypatch.setattr(target, "_compile", lambda *a, **k: (compiled, None))
    monkeypatch.setattr(target, "_per_inference_ms", lambda *a: 0.01)
    # one segment (no cut), in which the model spent 0.6 us outside its counters
    monkeypatch.setattr(target, "_prefix_gaps", lambda *a, **k: ([], [0.0006]))
    t = target.profile(tiny_artifacts()[True], {"x": np.zeros((1, 3, 16, 16), np.float32)},
                       tmp_path, runs=5, warmup=2)
    ms = {k.name: k.ms for k in t.kernels}
    # conv: (8 * 20 - 90) / 7 = 10 us, + 1; add ran under a microsecond; relu is fused (not a
    # runtime op); the input runs no kernel
    assert ms == pytest.approx({"conv": 0.011, "add": 0.0005})
    assert not t.kernels_inflated and "truncation" in t.method and t.runs == 5
    assert [k.dispatch_ms for k in t.kernels] == pytest.approx([0.0003] * 2)  # shared out


def test_openvino_uncounted_time_is_charged_to_the_segment_that_added_it():
    """Cuts after nodes 2 and 5: nodes 0-2, 3-5, 6- are three segments; a kernel belongs to
    the last node it covers, a layout conversion naming none to its predecessor's segment.
    The segments added 4, -1 (noise: none) and 3 us outside the counters."""
    from convdeploy.efficiency.timeline import KernelTime
    from convdeploy.targets.cpu_openvino import charge

    def k(name, *originals):
        return KernelTime(name, "Convolution:jit", 0.01, "float", originals=originals)

    positions = {f"n{i}": i for i in range(8)} | {"t7": 7}
    kernels = [k("a", "n0", "n1"), k("b", "n2"), k("reorder"), k("c", "n2", "n3"), k("d", "n5"),
               k("e", "t7")]
    got = charge(kernels, positions, [2, 5], [0.004, -0.001, 0.003])
    assert got == pytest.approx({"a": 0.004 / 3, "b": 0.004 / 3, "reorder": 0.004 / 3,
                                 "c": 0.0, "d": 0.0, "e": 0.003})


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_openvino_prefixes_are_timed_and_their_growth_charged(int8, monkeypatch, tmp_path):
    """On the tiny model: the prefixes compile and run, the segments are one more than the
    cuts, and the profile's kernels carry exactly the segments' positive growths, none
    negative. (Their sum is not checked against the model's time: the prefixes are timed
    apart from it, and with another job on the machine they exceeded it; the analysis caps
    the dispatch at what the latency leaves.)"""
    pytest.importorskip("openvino")
    import convdeploy.targets.cpu_openvino as ov_target
    from convdeploy.targets.base import RuntimeOptions

    monkeypatch.setattr(ov_target, "ROUND_MS", 5.0)
    target = ov_target.OpenVinoCpuTarget()
    art = tiny_artifacts()[int8]
    x = {"x": np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)}
    model, _ = target._onnx(art, RuntimeOptions(1))
    cuts, gaps = target._prefix_gaps(model, art.precision, x, RuntimeOptions(1), 0.1, 0.0,
                                     20, 5)
    assert cuts and len(gaps) == len(cuts) + 1
    measured = []
    real = target._prefix_gaps

    def recorded(*args, **kwargs):
        measured.append(real(*args, **kwargs))
        return measured[-1]

    monkeypatch.setattr(target, "_prefix_gaps", recorded)
    t = target.profile(art, x, tmp_path, runs=20, warmup=5)
    dispatch = [k.dispatch_ms for k in t.kernels]
    (_, gaps), = measured
    assert min(dispatch) >= 0 and "prefixes" in t.method
    assert sum(dispatch) == pytest.approx(sum(max(0.0, g) for g in gaps))

def test_ort_profile_credits_the_truncated_half_microsecond():
    """Two timed runs after one warm-up, two kernels each: durations 3 and 5 us (whole,
    truncated by the profiler) read as 3.5 and 5.5; the gap before the second kernel (ts 10
    after 3 us from ts 6: 1 us, 0.5 once credited) is its dispatch."""
    from onnx import helper

    from convdeploy.targets.cpu_ort import _timeline

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], "a"),
                               helper.make_node("Relu", ["a"], ["b"], "b")], "g", [], [])
    events = []
    for start in (0, 100, 200):  # the first is the warm-up
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": 50})
        events += [{"cat": "Node", "name": "a_kernel_time", "ts": start + 6, "dur": 3,
                    "args": {"op_name": "Relu"}},
                   {"cat": "Node", "name": "b_kernel_time", "ts": start + 10, "dur": 5,
                    "args": {"op_name": "Relu"}}]
    t = _timeline(events, graph, warmup=1, runs=2, threads=1)
    got = {k.name: (k.ms, k.dispatch_ms) for k in t.kernels}
    assert got["a"][0] == pytest.approx(0.0035) and got["b"][0] == pytest.approx(0.0055)
    assert got["b"][1] == pytest.approx(0.0005) and got["a"][1] == 0.0
    assert t.runs == 2 and t.run_ms == pytest.approx(0.05)
