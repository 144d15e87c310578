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

    def _read(self, artifact: Artifact, options: RuntimeOptions = RuntimeOptions()):
        import tempfile

        import onnx
        import openvino as ov

        from convdeploy.exporters.codes_rewrite import rewrite

        core = ov.Core()
        model = onnx.load(str(artifact.path))
        # its Slice is already fast (measured): no pools
        rewrites = rewrite(model, pools=False, wide_pads=True) if options.graph_rewrites \
            else {}
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
        us over 2,000, and 148 us with the corrections."""
        kernels, wall_ms = self._counted(artifact, inputs, options, runs, warmup)
        per_node = self._per_node_ms(options, int8=_mostly_int8(kernels))
        kernels = tuple(replace(k, dispatch_ms=per_node) for k in kernels)
        return Timeline(kernels, wall_ms,
                        f"openvino PERF_COUNT ({options.threads} thread"
                        f"{'s' if options.threads > 1 else ''}; whole-microsecond counters, "
                        f"truncation credited; {per_node * 1e3:.2f} us scheduling per node, "
                        f"measured on a chain of {'int8 ' if _mostly_int8(kernels) else ''}"
                        "1x1 convolutions)", runs,
                        per_inference_ms=self._per_inference_ms(options, max(runs, 200)),
                        kernels_inflated=False)

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

    def _per_node_ms(self, options: RuntimeOptions, int8: bool = False, short: int = 1,
                     long: int = 33, runs: int = 2000) -> float:
        """What OpenVINO spends between one node and the next, which no counter covers: on
        chains of ``short`` and ``long`` 1x1 convolutions (none fused), the growth of the
        unprofiled time less the growth of the corrected counters, per node. The chain's
        convolutions run in the model's precision (``int8``: a QDQ chain, which OpenVINO
        runs as int8 kernels) and are large enough (32 channels, 16x16) to be split across
        the threads, so the per-node cost includes the threads' hand-over: 8-channel 8x8
        ones ran on one thread and measured nothing at 2 threads."""
        import tempfile

        x = np.ones((1, CHAIN_CHANNELS, CHAIN_SIZE, CHAIN_SIZE), np.float32)
        grew = []
        with tempfile.TemporaryDirectory(prefix="convdeploy-ov-") as tmp:
            for k in (short, long):
                compiled, art = self._compile_graph(_chain_graph(k, int8), 17, options,
                                                    Path(tmp))
                plain = _mean_ms(compiled.create_infer_request(), x, runs, warmup=50)
                kernels, _ = self._counted(art, {"input": x}, options, runs=200, warmup=20)
                grew.append((plain, sum(k.ms for k in kernels), len(kernels)))
        (p0, c0, n0), (p1, c1, n1) = grew
        return max(0.0, ((p1 - p0) - (c1 - c0)) / max(1, n1 - n0))

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


CHAIN_CHANNELS, CHAIN_SIZE = 32, 16  # the scheduling probe's convolutions


def _mostly_int8(kernels: list[KernelTime]) -> bool:
    """Whether int8 kernels carry most of the counted time."""
    int8 = sum(k.ms for k in kernels if k.dtype == "int8")
    return int8 > 0.5 * sum(k.ms for k in kernels)


def _chain_graph(k: int, int8: bool):
    """``k`` 1x1 convolutions in a row (identity-like weights), float or QDQ (int8)."""
    from onnx import TensorProto, helper, numpy_helper

    c, n = CHAIN_CHANNELS, CHAIN_SIZE
    eye = np.eye(c, dtype=np.float32)[:, :, None, None]
    nodes, inits, prev = [], [], "input"
    if int8:
        inits += [numpy_helper.from_array(np.array(v, t), name) for v, t, name in (
            (0.05, np.float32, "s"), (0, np.uint8, "z"), (0.01, np.float32, "ws"),
            (0, np.int8, "wz"))]
        nodes.append(helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q0"]))
        prev = "q0"
    for i in range(k):
        last = i == k - 1
        if int8:
            inits.append(numpy_helper.from_array((eye * 50).astype(np.int8), f"w{i}"))
            nodes += [helper.make_node("DequantizeLinear", [prev, "s", "z"], [f"d{i}"]),
                      helper.make_node("DequantizeLinear", [f"w{i}", "ws", "wz"], [f"dw{i}"]),
                      helper.make_node("Conv", [f"d{i}", f"dw{i}"], [f"c{i}"], name=f"conv{i}"),
                      helper.make_node("QuantizeLinear", [f"c{i}", "s", "z"], [f"q{i + 1}"])]
            prev = f"q{i + 1}"
        else:
            inits.append(numpy_helper.from_array(eye * 0.5, f"w{i}"))
            out = "output" if last else f"t{i}"
            nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [out], name=f"conv{i}"))
            prev = out
    if int8:
        nodes.append(helper.make_node("DequantizeLinear", [prev, "s", "z"], ["output"]))
    shape = [1, c, n, n]
    return helper.make_graph(
        nodes, f"chain{k}{'_int8' if int8 else ''}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits)
