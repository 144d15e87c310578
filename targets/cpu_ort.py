"""``cpu-ort``: ONNX Runtime on the CPU execution provider.

QDQ models run as integer kernels (QLinearConv, QGemm...) when activations are uint8 on x86; the
compiled runnable reports which kernels ORT actually chose, so an int8 row proves it ran int8.
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

INTEGER_KERNELS = ("QLinearConv", "QLinearAdd", "QGemm", "QLinearMatMul", "QLinearGlobalAveragePool",
                   "ConvInteger", "MatMulInteger", "QLinearMul", "QLinearConcat", "QLinearAveragePool")


@dataclass
class OrtRunnable:
    session: Any
    input_name: str
    output_name: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.session.run([self.output_name], {self.input_name: inputs[self.input_name]})
        return {self.output_name: out[0]}


def has_4bit_activations(model) -> bool:
    """ORT 1.32's QDQ fusions break on 4-bit activations (ClipQuantFusion aborts on a UINT4 zero
    point; QLinearConv/MaxPool are built with uint4 inputs they reject). Such models run with
    basic graph optimizations only: Q/DQ then execute as written, exactly."""
    from onnx import TensorProto

    zero_points = {n.input[2] for n in model.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2}
    return any(i.name in zero_points and i.data_type in (TensorProto.INT4, TensorProto.UINT4)
               for i in model.graph.initializer)


class OrtCpuTarget(TargetBase):
    name = "cpu-ort"
    description = "ONNX Runtime, CPU execution provider (MLAS int8 kernels for QDQ models)"
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "onnxruntime"
    providers = ("CPUExecutionProvider",)
    profiles = True

    def _session(self, path: Path, options: RuntimeOptions, optimized: Path | None = None,
                 profile_prefix: Path | None = None):
        """A session of the file at ``path`` as ``exporters/codes_rewrite.py`` rewrites it
        (exact: Slice/Pad of quantized tensors on their codes, Slice chains merged), and the
        rewrites made."""
        import onnxruntime as ort
        import onnx

        from convdeploy.exporters.codes_rewrite import rewrite

        model = onnx.load(str(path))
        rewrites = rewrite(model) if options.graph_rewrites else {}
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        level = ort.GraphOptimizationLevel
        so.graph_optimization_level = (level.ORT_ENABLE_BASIC if has_4bit_activations(model)
                                       else level.ORT_ENABLE_ALL)
        so.log_severity_level = 3
        if optimized is not None:
            so.optimized_model_filepath = str(optimized)
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = str(profile_prefix)
        return ort.InferenceSession(model.SerializeToString(), sess_options=so,
                                    providers=list(self.providers)), rewrites

    def check_ops(self, artifact: Artifact) -> list[str]:
        # Building a session is the authoritative answer: ORT names the op or type it lacks.
        try:
            self._session(artifact.path, RuntimeOptions(threads=1))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            return [f"onnxruntime cannot load {artifact.path.name}: "
                    f"{str(exc).strip().splitlines()[0][:300]}"]
        return []

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> OrtRunnable:
        import onnx
        import onnxruntime as ort

        workdir.mkdir(parents=True, exist_ok=True)
        optimized = workdir / f"{artifact.name}.{self.name}.optimized.onnx"
        session, rewrites = self._session(artifact.path, options, optimized)
        kernels = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
        optimized.unlink(missing_ok=True)
        details = {"runtime": f"onnxruntime {ort.__version__}", "providers": list(self.providers),
                   "integer_kernels": {k: v for k, v in kernels.items() if k in INTEGER_KERNELS},
                   "float_convs": kernels.get("Conv", 0) + kernels.get("FusedConv", 0),
                   "optimization": str(session.get_session_options().graph_optimization_level),
                   **({"graph_rewrites": rewrites} if rewrites else {})}
        return OrtRunnable(session, artifact.input_name, artifact.output_name, options.threads,
                           details)

    def profile(self, artifact: Artifact, inputs: dict[str, np.ndarray], workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions(), runs: int = 50,
                warmup: int = 10) -> Timeline:
        """Per-kernel times from ONNX Runtime's profiler over ``runs`` runs after ``warmup``.

        The profiler costs time of its own between kernels (it doubles a ResNet-20 run), so
        the run time it reports is the profiled run's; the caller takes latency from an
        unprofiled session and only shares from here. The optimized graph is saved beside the
        profile: its node names are the profile's, its inputs the initializers that tie a
        fused kernel to the exported layer."""
        import json

        import onnx

        workdir.mkdir(parents=True, exist_ok=True)
        optimized = workdir / f"{artifact.name}.{self.name}.profiled.onnx"
        session, _ = self._session(artifact.path, options, optimized, workdir / "ort-profile")
        feed = {artifact.input_name: inputs[artifact.input_name]}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        graph = onnx.load(str(optimized)).graph
        return _timeline(events, graph, warmup=warmup, runs=runs,
                         threads=options.threads)


def _kernel_dtype(args: dict) -> str:
    """What a kernel computes in, from the element type of its first input."""
    shapes = args.get("input_type_shape") or [{}]
    kind = next(iter(shapes[0]), "float")
    return {"uint8": "int8", "int8": "int8", "uint16": "int16", "int16": "int16",
            "int4": "int4", "uint4": "int4"}.get(kind, "float")


TRUNCATION_US = 0.5  # what a whole-microsecond, truncated duration loses on average


def _timeline(events: list[dict], graph, *, warmup: int, runs: int, threads: int) -> Timeline:
    """Mean time per run of each kernel over the timed runs (the first ``warmup`` runs of the
    profile dropped: their first-run allocations would count), and the mean gap between the
    end of the kernel before it and its start: the executor's dispatch of the node (and the
    profiler's own recording, which the shares of the caller scale away).

    The profiler writes whole microseconds, truncated (``TimeDiffMicroSeconds``: a
    ``duration_cast``), so each kernel event is credited half a microsecond (the expected
    loss), taken from the gap after it: MobileNetV2's classifier at batch 32, a 3.5 us Gemm,
    read 117 GMAC/s against a float conv peak of 107 without it."""
    import bisect

    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[warmup:]
    if len(windows) < runs:
        raise RuntimeError(f"onnxruntime's profile holds {len(windows) + warmup} runs, "
                           f"{warmup + runs} were made")
    starts = [w[0] for w in windows]
    inits = {i.name for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}
    total: dict[str, float] = {}
    gaps: dict[str, float] = {}
    dtype: dict[str, str] = {}
    kernel: dict[str, str] = {}
    previous_end: dict[int, float] = {}
    node_events = sorted((e for e in events if e.get("cat") == "Node"
                          and e["name"].endswith("_kernel_time")), key=lambda e: e["ts"])
    for e in node_events:
        run = bisect.bisect_right(starts, e["ts"]) - 1
        if run < 0 or e["ts"] > windows[run][1]:
            continue  # a warm-up run
        name = e["name"][: -len("_kernel_time")]
        dur = e["dur"] + TRUNCATION_US
        total[name] = total.get(name, 0.0) + dur / 1e3
        if run in previous_end:
            gaps[name] = gaps.get(name, 0.0) + max(0.0, e["ts"] - previous_end[run]) / 1e3
        previous_end[run] = e["ts"] + dur
        kernel[name] = e["args"].get("op_name", "?")
        dtype.setdefault(name, _kernel_dtype(e["args"]))
    kernels = []
    for name, ms in total.items():
        node = nodes.get(name)
        tensors = tuple(node.output) if node else ()
        if name.endswith("_nchwc"):  # the NCHWc transformer names a node after its output,
            tensors += (name[: -len("_nchwc")],)  # and may rename all its initializers
        kernels.append(KernelTime(
            name, kernel[name], ms / len(windows), dtype[name],
            initializers=tuple(i for i in node.input if i in inits) if node else (),
            tensors=tensors, originals=(name,), dispatch_ms=gaps.get(name, 0.0) / len(windows)))
    run_ms = sum(b - a for a, b in windows) / len(windows) / 1e3
    return Timeline(tuple(kernels), run_ms, f"onnxruntime profiler ({threads} thread"
                    f"{'s' if threads > 1 else ''})", len(windows))
