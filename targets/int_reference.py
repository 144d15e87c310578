"""``int-reference``: the quantized model run with integer-only arithmetic (numpy, exact).

It lowers the QDQ ONNX artifact (the ``Encodings``' numbers, nothing re-derived) to the shared
``OpGraph`` and executes each op with ``quant.integer_kernels``: int32 bias and accumulators,
fixed-point requantization, clamps. Bit-exact targets (LiteRT reference kernels, HLS
C-simulation) must equal it; float-requantizing runtimes are measured against it in LSBs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase


def _slice(x: np.ndarray, attrs: dict) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(attrs["starts"], attrs["ends"], attrs["axes"],
                                      attrs["steps"]):
        index[axis] = slice(start, min(end, x.shape[axis]) if end > 0 else end, step)
    return x[tuple(index)]


CACHE_ELEMENTS = 1 << 18  # int64 values in 2 MiB, one core's L2 here


@dataclass
class IntegerRunnable:
    """Executes a lowered quantized ``OpGraph``; ``codes()`` returns the integer output."""

    graph: Any  # convdeploy.exporters.lowering.OpGraph
    arithmetic: Any = None  # quant.fixed_point.IntegerArithmetic (default: TFLITE_REFERENCE)
    threads: int = 1
    details: dict[str, Any] = field(default_factory=dict)
    _chunk: int | None = field(default=None, repr=False)

    def codes(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor's integer codes (and the float input/output) for input ``x``."""
        from convdeploy.exporters.lowering import OpKind
        from convdeploy.quant import integer_kernels as k
        from convdeploy.quant.fixed_point import TFLITE_REFERENCE, activation_range

        g = self.graph
        ar = self.arithmetic or TFLITE_REFERENCE
        values: dict[str, np.ndarray] = {g.input: np.asarray(x, dtype=np.float32)}
        for op in g.ops:
            src = values[op.inputs[0]]
            q_in = g.quant.get(op.inputs[0])
            q_out = g.quant.get(op.output)
            if q_out is not None:
                low, high = activation_range(op.activation.value, q_out.zero_point,
                                             q_out.scale, q_out.qmin, q_out.qmax)
            if op.kind is OpKind.QUANTIZE:
                s = np.float32(q_out.scale)
                out = np.clip(np.rint(src / s).astype(np.int64) + q_out.zero_point,
                              q_out.qmin, q_out.qmax)
            elif op.kind is OpKind.DEQUANTIZE:
                out = (src - q_in.zero_point).astype(np.float32) * np.float32(q_in.scale)
            elif op.kind in (OpKind.CONV, OpKind.DEPTHWISE_CONV):
                acc = k.conv2d(src, q_in.zero_point, op.weight, op.bias,
                               strides=op.attrs["strides"], pads=op.attrs["pads"],
                               dilations=op.attrs["dilations"],
                               depthwise=op.kind is OpKind.DEPTHWISE_CONV,
                               groups=op.attrs.get("groups", 1))
                out = k.requantize(acc, q_in.scale, op.weight_scale, q_out.scale,
                                   q_out.zero_point, low, high, rounding=ar.conv)
            elif op.kind is OpKind.FULLY_CONNECTED:
                acc = k.fully_connected(src, q_in.zero_point, op.weight, op.bias)
                out = k.requantize(acc, q_in.scale, op.weight_scale, q_out.scale,
                                   q_out.zero_point, low, high, rounding=ar.fully_connected)
            elif op.kind is OpKind.ADD:
                other = op.inputs[1]
                out = k.add(src, q_in, values[other], g.quant[other], q_out, low, high, ar.add)
            elif op.kind is OpKind.MEAN:
                out = k.spatial_mean(src, q_in, q_out, ar.mean)
            elif op.kind is OpKind.MAX_POOL:
                out = np.clip(k.max_pool(src, op.attrs["kernel"], op.attrs["strides"],
                                         op.attrs["pads"]), low, high)
            elif op.kind is OpKind.STRIDED_SLICE:
                out = _slice(src, op.attrs)
            elif op.kind is OpKind.PAD:
                pads = op.attrs["pads"]
                half = len(pads) // 2
                out = np.pad(src, list(zip(pads[:half], pads[half:])),
                             constant_values=q_in.zero_point)
            elif op.kind is OpKind.RESHAPE:
                out = src.reshape((src.shape[0], *op.attrs["sample_shape"]))
            elif op.kind is OpKind.TRANSPOSE:
                out = src.transpose(op.attrs["perm"])
            else:  # pragma: no cover - lowering admits only the kinds above
                raise NotImplementedError(op.kind)
            values[op.output] = out
        return values

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        step = self.chunk_samples()
        outs = [self.codes(x[i:i + step])[self.graph.output] for i in range(0, len(x), step)]
        return {self.graph.output: np.concatenate(outs) if len(outs) != 1 else outs[0]}

    def chunk_samples(self) -> int:
        """Samples run together: few enough that the largest int64 activation stays in a
        core's L2 cache (2 MiB on the AMD EPYC measured). The kernels are a chain of
        memory-bound array passes: batch 100 ran ~1.3x slower than chunks of 16 (ResNet-20)."""
        from convdeploy.exporters.lowering import infer_shapes

        if self._chunk is None:
            largest = max(int(np.prod(shape)) for shape in infer_shapes(self.graph).values())
            self._chunk = max(1, CACHE_ELEMENTS // largest)
        return self._chunk


class IntReferenceTarget(TargetBase):
    name = "int-reference"
    description = ("integer-only execution of the quantized model (numpy, exact): the oracle "
                   "every target is measured against in output LSBs")
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "numpy"
    weight_bits = (4, 8)
    activation_bits = (4, 8, 16)
    runs_float = False
    latency_not_meaningful = "an exactness oracle in numpy, not a runtime"

    def check_ops(self, artifact: Artifact) -> list[str]:
        from convdeploy.exporters.lowering import LoweringError, lower_file

        try:
            lower_file(artifact.path)
        except LoweringError as exc:
            return [str(exc)]
        return []

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> IntegerRunnable:
        from convdeploy.exporters.lowering import lower_file

        graph = lower_file(artifact.path)
        return IntegerRunnable(graph, None, options.threads,
                               {"runtime": f"numpy {np.__version__} (integer kernels)",
                                "ops": len(graph.ops)})
