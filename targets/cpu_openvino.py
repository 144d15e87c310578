"""``cpu-openvino``: OpenVINO on the CPU plugin.

Float models run with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX/AVX512-BF16 OpenVINO
otherwise silently runs bf16, and a "float" row would carry bf16 error. QDQ models become
FakeQuantize ops that OpenVINO's low-precision transformations turn into u8/i8 kernels.

The file is read through ``exporters/codes_rewrite.py`` (exact): Slice and Pad between the
quantizers of one encoding run on the integer codes, consecutive Slices as one. Besides the
speed, this is a legalization: OpenVINO 2026.4 cannot read a QDQ file in which a padded tensor
with a non-zero zero point is later reshaped ("Argument shapes are inconsistent" at a
Subtract: its low-precision pass moves the dequantization past the Pad, which turns the scalar
zero point into a per-row constant, then past the Reshape, where that constant no longer fits).
Such files come from the (2+1)D form of a video model and from 1-D signals fed as (N, 1, L, 1);
a Pad of the codes with the zero point is the same numbers in a form OpenVINO reads (tested to
equal onnxruntime on the file as written).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.efficiency.timeline import KernelTime, Timeline
from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase

_STRUCTURAL = {"Parameter", "Result", "Constant"}
_WEIGHTED_LAYERS = {"Convolution", "FullyConnected"}


def _message(exc: Exception) -> str:
    """OpenVINO errors start with source locations; keep the lines that say what is wrong."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return " ".join(useful or lines)[:400]


@dataclass
class OpenVinoRunnable:
    request: Any
    output_name: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        run(self.request, x)
        return {self.output_name: self.request.get_output_tensor(0).data.copy()}


def run(request, x: np.ndarray) -> None:
    """One synchronous inference with ``x`` as the input tensor's memory (no copy): the
    dict form ``infer({0: x})`` spent ~0.1 ms per call converting it (ResNet-20 int8: 0.41
    vs 0.31 ms), which is Python's cost, not OpenVINO's."""
    import openvino as ov

    request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x, dtype=np.float32),
                                       shared_memory=True))
    request.infer()


class OpenVinoCpuTarget(TargetBase):
    name = "cpu-openvino"
    description = "OpenVINO CPU plugin (f32 precision hint; u8/i8 kernels for QDQ models)"
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "openvino"
    profiles = True

    def _onnx(self, artifact: Artifact, options: RuntimeOptions):
        """The ONNX model as OpenVINO is given it (the exact rewrites of the module doc
        applied) and what the rewrites did."""
        import onnx

        from convdeploy.exporters.codes_rewrite import rewrite

        model = onnx.load(str(artifact.path))
        # its Slice is already fast (measured): no pools
        rewrites = rewrite(model, pools=False, wide_pads=True) if options.graph_rewrites \
            else {}
        return model, rewrites

    def _read(self, artifact: Artifact, options: RuntimeOptions = RuntimeOptions()):
        import tempfile

        import onnx
        import openvino as ov

        core = ov.Core()
        model, rewrites = self._onnx(artifact, options)
        if not rewrites:
            return core, core.read_model(str(artifact.path)), {}
        with tempfile.TemporaryDirectory(prefix="convdeploy-ov-") as tmp:
            path = Path(tmp) / artifact.path.name
            onnx.save(model, str(path))
            return core, core.read_model(str(path)), rewrites

    def check_ops(self, artifact: Artifact) -> list[str]:
        try:
            core, model, _ = self._read(artifact)
            supported = core.query_model(model, "CPU")
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            return [f"OpenVINO cannot read {artifact.path.name}: {_message(exc)}"]
        missing = [f"{op.get_type_name()} ({op.get_friendly_name()})" for op in model.get_ops()
                   if op.get_type_name() not in _STRUCTURAL
                   and op.get_friendly_name() not in supported]
        return [f"OpenVINO CPU cannot run op {m}" for m in missing[:10]]

    def _compile(self, artifact: Artifact, options: RuntimeOptions, *, perf_count: bool = False):
        core, model, rewrites = self._read(artifact, options)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": options.threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": perf_count}
        return core.compile_model(model, "CPU", config), rewrites

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> OpenVinoRunnable:
        import openvino as ov

        compiled, rewrites = self._compile(artifact, options)
        # Which precision each conv / fully-connected kernel really runs in (u8 = int8 path).
        precisions = Counter()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].value in _WEIGHTED_LAYERS:
                precisions[info["runtimePrecision"].value] += 1
        details = {"runtime": f"openvino {ov.__version__}", "inference_precision_hint": "f32",
                   "weighted_layer_precisions": dict(precisions)}
        if rewrites:
            details["graph_rewrites"] = rewrites  # see the module doc
        return OpenVinoRunnable(compiled.create_infer_request(), artifact.output_name,
                                options.threads, details)

    def profile(self, artifact: Artifact, inputs: dict[str, np.ndarray], workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions(), runs: int = 50,
                warmup: int = 10) -> Timeline:
        """Per-kernel times from OpenVINO's performance counters (``PERF_COUNT``). The runtime
        model names the exported-graph layers each fused kernel covers
        (``originalLayersNames``).

        What the counters are (the CPU plugin's ``PerfCount``): per node, the mean over every
        inference since compilation of each inference's time truncated to whole microseconds,
        itself truncated; a node whose mean is under 1 us is reported NOT_RUN. So: the first
        (cold) inference is read alone and taken out of the mean; each executed node is
        credited 1 us (the expected loss of the two truncations, half a microsecond each);
        a node of the runtime model reported NOT_RUN ran in under 1 us and is credited half
        a microsecond. ResNet-20 int8 at batch 1: 25 executed and 8 sub-microsecond nodes;
        their counters summed to 149 us read after 50 runs (the cold run in the mean), 119
        us over 2,000, and 148 us with the corrections.

        What no counter covers (OpenVINO's passage from one node to the next: 50-150 us of
        0.3-2 ms at batch 1 on the CIFAR models) is measured where it is spent: the model's
        prefixes (``exporters/onnx_cuts.py``) are timed unprofiled, side by side, and what
        each adds to the time outside its counters is charged to its nodes as their dispatch
        (``charge``). A chain of 1x1 convolutions, measured instead, gave 0-0.8 us per node,
        a third of what the models leave."""
        kernels, wall_ms = self._counted(artifact, inputs, options, runs, warmup)
        per_inference = self._per_inference_ms(options, max(runs, 200))
        model, _ = self._onnx(artifact, options)
        cuts, gaps = self._prefix_gaps(model, artifact.precision, inputs, options, wall_ms,
                                       per_inference, runs, warmup)
        dispatch = charge(kernels, _node_positions(model), [i for i, _ in cuts], gaps)
        kernels = tuple(replace(k, dispatch_ms=dispatch.get(k.name, 0.0)) for k in kernels)
        return Timeline(kernels, wall_ms,
                        f"openvino PERF_COUNT ({options.threads} thread"
                        f"{'s' if options.threads > 1 else ''}; whole-microsecond counters, "
                        f"truncation credited; the time outside them "
                        f"({sum(dispatch.values()) * 1e3:.0f} us) charged to the nodes of "
                        f"{len(gaps)} model prefixes timed unprofiled)", runs,
                        notes=_negative_note(gaps),
                        per_inference_ms=per_inference, kernels_inflated=False)

    def _counted(self, artifact: Artifact, inputs: dict[str, np.ndarray],
                 options: RuntimeOptions, runs: int, warmup: int
                 ) -> tuple[list[KernelTime], float]:
        """The counters' kernels (corrected as ``profile`` says) and the profiled run's mean
        time (ms)."""
        compiled, _ = self._compile(artifact, options, perf_count=True)
        covers, kinds = {}, {}
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            names = info["originalLayersNames"].value if "originalLayersNames" in info else ""
            covers[op.get_friendly_name()] = tuple(n for n in names.split(",") if n)
            if "layerType" in info:
                kinds[op.get_friendly_name()] = (info["layerType"].value,
                                                 info["execType"].value
                                                 if "execType" in info else "")
        request = compiled.create_infer_request()
        (x,) = inputs.values()
        run(request, x)
        cold = {i.node_name: _us(i) for i in request.get_profiling_info()}
        wall_ms = _mean_ms(request, x, runs, warmup)
        n = 1 + warmup + runs
        kernels = []
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                us = (n * _us(info) - cold.get(info.node_name, 0.0)) / (n - 1) + 1.0
                kind = f"{info.node_type}:{info.exec_type}"
            elif kinds.get(info.node_name, ("Parameter",))[0] not in _NO_KERNEL:
                us = 0.5  # ran, in under a microsecond on average
                kind = ":".join(kinds[info.node_name])
            else:
                continue
            kernels.append(KernelTime(info.node_name, kind, max(us, 0.0) * 1e-3, _ov_dtype(kind),
                                      originals=covers.get(info.node_name) or (info.node_name,)))
        return kernels, wall_ms

    def _prefix_gaps(self, model, precision: str, inputs: dict[str, np.ndarray],
                     options: RuntimeOptions, wall_ms: float,
                     per_inference_ms: float, runs: int, warmup: int
                     ) -> tuple[list[tuple[int, str]], list[float]]:
        """The cuts of ``model`` (as ``_onnx`` gives it) and, per segment between them (the
        last ends the model), what it adds to the unprofiled time beyond its counters (ms):
        the prefixes, the whole model the last (each ending in the same reduction,
        ``onnx_cuts.prefix``), are each compiled anew and timed in alternating rounds of
        ~0.1 s (the median of the rounds' means), their counters read from their own
        profiled runs; the first segment's growth is over the per-inference cost."""
        import tempfile

        import onnx

        from convdeploy.exporters.onnx_cuts import cut_points, prefix

        cuts = cut_points(model, SEGMENTS - 1)
        ends = [*cuts, (len(model.graph.node) - 1, model.graph.output[0].name)]
        as_given = replace(options, graph_rewrites=False)  # the prefixes are cut rewritten
        (x,) = inputs.values()
        with tempfile.TemporaryDirectory(prefix="convdeploy-ov-") as tmp:
            arts = []
            for k, (i, tensor) in enumerate(ends):
                path = Path(tmp) / f"prefix{k}.onnx"
                onnx.save(prefix(model, i, tensor, f"prefix{k}"), str(path))
                arts.append(Artifact(f"prefix{k}", ArtifactFormat.ONNX, precision, path=path))
            counted = [sum(k.ms for k in self._counted(a, inputs, as_given, runs, warmup)[0])
                       for a in arts]
            requests = [self._compile(a, as_given)[0].create_infer_request() for a in arts]
            per_round = max(3, int(ROUND_MS / max(wall_ms, 1e-3)))
            means = [[] for _ in requests]
            for r in range(ROUNDS):
                for k, request in enumerate(requests):
                    means[k].append(_mean_ms(request, x, per_round, warmup=warmup if r == 0
                                             else 1))
        outside = [per_inference_ms] + [float(np.median(m)) - c
                                        for m, c in zip(means, counted)]
        return cuts, [b - a for a, b in zip(outside, outside[1:])]

    def _per_inference_ms(self, options: RuntimeOptions, runs: int) -> float:
        """Mean time of one inference of a one-op model (a 1-element Add) with the same
        settings: what OpenVINO spends per inference outside any layer of a model (~60 us
        here, a fifth of ResNet-20's int8 batch-1 latency), which its counters do not show."""
        import tempfile

        from onnx import TensorProto, helper, numpy_helper

        graph = helper.make_graph(
            [helper.make_node("Add", ["input", "c"], ["output"])], "one_op",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1])],
            [numpy_helper.from_array(np.ones((1, 1), np.float32), "c")])
        with tempfile.TemporaryDirectory(prefix="convdeploy-ov-") as tmp:
            compiled, _ = self._compile_graph(graph, 21, options, Path(tmp))
        return _mean_ms(compiled.create_infer_request(), np.ones((1, 1), np.float32), runs,
                        warmup=20)

    def _compile_graph(self, graph, opset: int, options: RuntimeOptions, folder: Path):
        """A small ONNX graph of the machine's own (the scheduling and per-inference probes),
        saved under ``folder`` and compiled with the model's settings."""
        import onnx
        from onnx import helper

        path = folder / f"{graph.name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]),
                  str(path))
        art = Artifact(graph.name, ArtifactFormat.ONNX, "float", path=path)
        compiled, _ = self._compile(art, options)
        return compiled, art



# runtime-model ops that run no kernel of their own (inputs, outputs, constants)
_NO_KERNEL = {"Parameter", "Result", "Constant", "Input", "Output"}


def _mean_ms(request, x: np.ndarray, runs: int, warmup: int) -> float:
    """Mean wall time (ms) of ``runs`` inferences after ``warmup`` untimed ones."""
    import time

    for _ in range(warmup):
        run(request, x)
    t0 = time.perf_counter()
    for _ in range(runs):
        run(request, x)
    return (time.perf_counter() - t0) / runs * 1e3


def _us(info) -> float:
    return info.real_time.total_seconds() * 1e6


def _ov_dtype(kind: str) -> str:
    """``Convolution:brgconv_avx512_I8`` -> int8; OpenVINO's implementation names end in the
    precision they run."""
    suffix = kind.rsplit("_", 1)[-1].lower()
    return {"i8": "int8", "u8": "int8", "i16": "int16", "u16": "int16",
            "bf16": "bf16", "f16": "float16"}.get(suffix, "float")


SEGMENTS = 8  # prefixes timed per profile: the uncounted time is placed to an eighth
ROUND_MS, ROUNDS = 100.0, 10  # each prefix: ten ~0.1 s rounds, alternating with the others


def _node_positions(model) -> dict[str, int]:
    """Each node's place in the graph's order, under its name and its outputs' names (what
    OpenVINO's ``originalLayersNames`` and node names are made of)."""
    where = {}
    for i, node in enumerate(model.graph.node):
        where.update({o: i for o in node.output if o})
        if node.name:
            where[node.name] = i
    return where


def charge(kernels, positions: dict[str, int], cuts: list[int],
           gaps: list[float]) -> dict[str, float]:
    """Each kernel's dispatch (ms): its segment's growth in uncounted time (``gaps[s]``, a
    negative growth is noise and counts as none), in equal parts over the segment's kernels.
    Segment ``s`` holds the nodes after cut ``s - 1`` up to cut ``s`` (the last: to the end);
    a kernel is in the segment of the last exported node it covers, a kernel that names none
    (a layout conversion) in its predecessor's."""
    segment_of, current = {}, 0
    for k in kernels:
        covered = [positions[n] for n in (*k.originals, k.name) if n in positions]
        if covered:
            last = max(covered)
            current = next((s for s, cut in enumerate(cuts) if last <= cut), len(cuts))
        segment_of[k.name] = current
    sizes = Counter(segment_of.values())
    return {name: max(0.0, gaps[s]) / sizes[s] for name, s in segment_of.items()}


def _negative_note(gaps: list[float]) -> tuple[str, ...]:
    lost = -sum(g for g in gaps if g < 0)
    return (f"{sum(g < 0 for g in gaps)} of {len(gaps)} model prefixes grew the uncounted "
            f"time by less than nothing (timing noise, {lost * 1e3:.0f} us): counted as none",
            ) if lost > 0 else ()
