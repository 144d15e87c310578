"""``mobile-litert`` / ``mobile-litert-ref``: ``.tflite`` models on LiteRT (``ai-edge-litert``).

``mobile-litert`` runs LiteRT's default CPU path (XNNPACK kernels): what a phone app gets, and
what latency is measured on. ``mobile-litert-ref`` runs the reference kernels
(``BUILTIN_REF``): slow, and bit-exact to the integer reference, which is how the report proves
that the ``.tflite`` carries exactly the ``Encodings``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.efficiency.timeline import Timeline
from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase


@dataclass
class LiteRtRunnable:
    """A LiteRT interpreter; NCHW float input in, output out (NHWC inside the model)."""

    path: Path
    resolver: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)
    _batch: int | None = None

    def __post_init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interpreter = Interpreter(
            model_path=str(self.path), num_threads=self.threads,
            experimental_op_resolver_type=getattr(OpResolverType, self.resolver))
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def delegation(self) -> dict[str, Any]:
        """How many XNNPACK partitions the graph became (an op XNNPACK does not take splits
        the graph and runs on LiteRT's unoptimised kernels); empty where this LiteRT does not
        list its nodes. (The list keeps the nodes a partition replaced, so which ops stayed
        outside cannot be read from it.)"""
        self.interpreter.allocate_tensors()
        self._batch = None
        try:
            names = [op["op_name"] for op in self.interpreter._get_ops_details()]
        except (AttributeError, KeyError, RuntimeError):  # a private API: LiteRT may drop it
            return {}
        return {"xnnpack_partitions": names.count("DELEGATE")}

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1)
                                 if x.ndim == 4 else x)
        if self._batch != len(x):
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return {self.output["name"]: self.interpreter.get_tensor(self.output["index"]).copy()}


class LiteRtTarget(TargetBase):
    name = "mobile-litert"
    description = "LiteRT (TFLite) CPU kernels, XNNPACK: the mobile runtime; float and int8"
    formats = (ArtifactFormat.TFLITE,)
    runtime_module = "ai_edge_litert"
    runtime_package = "ai-edge-litert (pip install 'convdeploy[mobile]')"
    weight_bits = (8,)
    activation_bits = (8,)
    resolver = "AUTO"
    profiles = True  # each op isolated (litert_isolated.py)

    def check_scheme(self, scheme) -> list[str]:
        reasons = super().check_scheme(scheme)
        if not scheme.weights.symmetric:
            reasons.append(f"{self.name} needs symmetric int8 weights")
        return reasons

    def check_ops(self, artifact: Artifact) -> list[str]:
        try:
            LiteRtRunnable(artifact.path, self.resolver, 1)
        except (RuntimeError, ValueError) as exc:
            return [f"LiteRT cannot load {artifact.path.name}: {str(exc).splitlines()[0]}"]
        return []

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> LiteRtRunnable:
        import importlib.metadata as md

        runnable = LiteRtRunnable(artifact.path, self.resolver, options.threads,
                                  {"runtime": f"ai-edge-litert {md.version('ai-edge-litert')}",
                                   "kernels": "XNNPACK" if self.resolver == "AUTO"
                                   else "reference", "layout": "NHWC",
                                   "float_islands": artifact.details.get("float_islands", []),
                                   "rewritten_2d": artifact.details.get("rewritten_2d", [])})
        if self.resolver == "AUTO":
            runnable.details.update(runnable.delegation())
        return runnable


    def profile(self, artifact: Artifact, inputs: dict[str, np.ndarray], workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions(), runs: int = 50,
                warmup: int = 10) -> Timeline:
        """Per-op times with each op isolated (``litert_isolated``): LiteRT has no per-op
        profiler in Python. The reference kernels are not profiled (never timed)."""
        from .litert_isolated import isolated_timeline

        (x,) = inputs.values()
        return isolated_timeline(artifact.path, threads=options.threads, batch=len(x),
                                 runs=runs, warmup=warmup)

class LiteRtReferenceTarget(LiteRtTarget):
    name = "mobile-litert-ref"
    description = "LiteRT reference kernels (BUILTIN_REF): slow, bit-exact to int-reference"
    resolver = "BUILTIN_REF"
    profiles = False  # reference kernels are never timed

