"""``cpu-openvino``: OpenVINO on the CPU plugin.

Float models run with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX/AVX512-BF16 OpenVINO
otherwise silently runs bf16, and a "float" row would carry bf16 error. QDQ models become
FakeQuantize ops that OpenVINO's low-precision transformations turn into u8/i8 kernels.

One legalization, exact: OpenVINO 2026.4 cannot read a QDQ file in which a padded tensor with a
non-zero zero point is later reshaped ("Argument shapes are inconsistent" at a Subtract: its
low-precision pass moves the dequantization past the Pad, which turns the scalar zero point into
a per-row constant, then past the Reshape, where that constant no longer fits). Such files come
from the (2+1)D form of a video model and from 1-D signals fed as (N, 1, L, 1). Every
``DequantizeLinear -> Pad(0.0) -> QuantizeLinear`` on one encoding is read instead as a Pad of
the integer codes with the zero point (``_integer_pads``): the same numbers, in a form
OpenVINO reads (tested to equal onnxruntime on the file as written).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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


def _integer_pads(model) -> int:
    """Rewrite every ``DequantizeLinear -> Pad -> QuantizeLinear`` whose quantizers share one
    scale and zero point and whose pad value is 0.0 as ``Pad(codes, pads, zero point)``:
    DQ(zp) = 0.0, so the codes are those the QDQ chain computes. Returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    replace, drop = {}, set()
    for pad in graph.node:
        if pad.op_type != "Pad" or len(pad.input) < 2 or (
                len(pad.input) > 3 and pad.input[3]) or any(
                a.name == "mode" and a.s not in (b"constant", b"") for a in pad.attribute):
            continue
        dq = producer.get(pad.input[0])
        users = readers.get(pad.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 or \
                users[0].op_type != "QuantizeLinear" or len(dq.input) < 3:
            continue
        q = users[0]
        if list(q.input[1:3]) != list(dq.input[1:3]) or pad.output[0] in \
                {o.name for o in graph.output} or dq.input[2] not in inits or \
                len(inits[dq.input[2]].dims) != 0:  # a scalar zero point: Pad's fill value
            continue
        value = pad.input[2] if len(pad.input) > 2 else ""
        if value and (value not in inits or np.any(numpy_helper.to_array(inits[value]) != 0)):
            continue
        replace[id(pad)] = helper.make_node("Pad", [dq.input[0], pad.input[1], dq.input[2]],
                                            [q.output[0]], name=f"{pad.name}.codes",
                                            mode="constant")
        drop.add(id(q))
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replace)


@dataclass
class OpenVinoRunnable:
    request: Any
    output_name: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        self.request.infer({0: x})
        return {self.output_name: self.request.get_output_tensor(0).data.copy()}


class OpenVinoCpuTarget(TargetBase):
    name = "cpu-openvino"
    description = "OpenVINO CPU plugin (f32 precision hint; u8/i8 kernels for QDQ models)"
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "openvino"

    def _read(self, artifact: Artifact):
        import tempfile

        import onnx
        import openvino as ov

        core = ov.Core()
        model = onnx.load(str(artifact.path))
        pads = _integer_pads(model)
        if not pads:
            return core, core.read_model(str(artifact.path)), 0
        with tempfile.TemporaryDirectory(prefix="convdeploy-ov-") as tmp:
            path = Path(tmp) / artifact.path.name
            onnx.save(model, str(path))
            return core, core.read_model(str(path)), pads

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
        core, model, integer_pads = self._read(artifact)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": options.threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": perf_count}
        return core.compile_model(model, "CPU", config), integer_pads

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> OpenVinoRunnable:
        import openvino as ov

        compiled, integer_pads = self._compile(artifact, options)
        # Which precision each conv / fully-connected kernel really runs in (u8 = int8 path).
        precisions = Counter()
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].value in _WEIGHTED_LAYERS:
                precisions[info["runtimePrecision"].value] += 1
        details = {"runtime": f"openvino {ov.__version__}", "inference_precision_hint": "f32",
                   "weighted_layer_precisions": dict(precisions)}
        if integer_pads:
            details["integer_pads"] = integer_pads  # see the module doc
        return OpenVinoRunnable(compiled.create_infer_request(), artifact.output_name,
                                options.threads, details)

    def profile(self, artifact: Artifact, inputs: dict[str, np.ndarray], workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions(), runs: int = 50,
                warmup: int = 10) -> Timeline:
        """Per-kernel times from OpenVINO's performance counters (``PERF_COUNT``), summed over
        ``runs`` inferences after ``warmup`` (the first inference's one-off work would
        otherwise count). The runtime model names the exported-graph layers each fused
        kernel covers (``originalLayersNames``)."""
        import time

        compiled, _ = self._compile(artifact, options, perf_count=True)
        covers = {}
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            names = info["originalLayersNames"].value if "originalLayersNames" in info else ""
            covers[op.get_friendly_name()] = tuple(n for n in names.split(",") if n)
        request = compiled.create_infer_request()
        (x,) = inputs.values()
        for _ in range(warmup):
            request.infer({0: x})
        total: dict[str, float] = {}
        kind: dict[str, str] = {}
        wall = 0.0
        for _ in range(runs):
            t0 = time.perf_counter()
            request.infer({0: x})
            wall += time.perf_counter() - t0
            for info in request.get_profiling_info():
                if info.status != info.Status.EXECUTED:
                    continue
                total[info.node_name] = total.get(info.node_name, 0.0) + \
                    info.real_time.total_seconds() * 1e3
                kind[info.node_name] = f"{info.node_type}:{info.exec_type}"
        kernels = tuple(KernelTime(name, kind[name], ms / runs, _ov_dtype(kind[name]),
                                   originals=covers.get(name, (name,)) or (name,))
                        for name, ms in total.items())
        return Timeline(kernels, wall / runs * 1e3, f"openvino PERF_COUNT ({options.threads} "
                        f"thread{'s' if options.threads > 1 else ''})", runs)


def _ov_dtype(kind: str) -> str:
    """``Convolution:brgconv_avx512_I8`` -> int8; OpenVINO's implementation names end in the
    precision they run."""
    suffix = kind.rsplit("_", 1)[-1].lower()
    return {"i8": "int8", "u8": "int8", "i16": "int16", "u16": "int16",
            "bf16": "bf16", "f16": "float16"}.get(suffix, "float")
