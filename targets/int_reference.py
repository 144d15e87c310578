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


def _range(op, quant) -> tuple[int, int]:
    from convdeploy.quant.fixed_point import activation_range

    q = quant[op.output]
    return activation_range(op.activation.value, q.zero_point, q.scale, q.qmin, q.qmax)


def _quantize(op, values, quant, ar):
    """TFLite's QUANTIZE of floats: ``round(x / s) + zp`` in float32, rounding half away from
    zero (TfLiteRound), clamped."""
    q = quant[op.output]
    scaled = (values[op.inputs[0]] / np.float32(q.scale)).astype(np.float32).astype(np.float64)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # exact in float64
    return np.clip(rounded.astype(np.int64) + q.zero_point, q.qmin, q.qmax)


def _dequantize(op, values, quant, ar):
    q = quant[op.inputs[0]]
    return (values[op.inputs[0]] - q.zero_point).astype(np.float32) * np.float32(q.scale)


def _conv(op, values, quant, ar):
    from convdeploy.exporters.lowering import OpKind
    from convdeploy.quant import integer_kernels as k

    q_in, q_out = quant[op.inputs[0]], quant[op.output]
    acc = k.conv2d(values[op.inputs[0]], q_in.zero_point, op.weight, op.bias,
                   strides=op.attrs["strides"], pads=op.attrs["pads"],
                   dilations=op.attrs["dilations"], depthwise=op.kind is OpKind.DEPTHWISE_CONV,
                   groups=op.attrs.get("groups", 1))
    return k.requantize(acc, q_in.scale, op.weight_scale, q_out.scale, q_out.zero_point,
                        *_range(op, quant), rounding=ar.conv)


def _fully_connected(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    q_in, q_out = quant[op.inputs[0]], quant[op.output]
    acc = k.fully_connected(values[op.inputs[0]], q_in.zero_point, op.weight, op.bias)
    return k.requantize(acc, q_in.scale, op.weight_scale, q_out.scale, q_out.zero_point,
                        *_range(op, quant), channel_axis=acc.ndim - 1,
                        rounding=ar.fully_connected)


def _binary(name: str, rounding: str):
    def run(op, values, quant, ar):
        from convdeploy.exporters.lowering import QParams
        from convdeploy.quant import integer_kernels as k

        operands = [(values[i], quant[i]) for i in op.inputs]
        if op.weight is not None:  # a constant: int8 codes, per-tensor symmetric
            const = (op.weight.astype(np.int64),
                     QParams(float(np.float32(op.weight_scale.reshape(-1)[0])), 0, 8, True))
            operands.insert(0 if op.attrs.get("constant_first") else 1, const)
        (a, a_q), (b, b_q) = operands
        return getattr(k, name)(a, a_q, b, b_q, quant[op.output], *_range(op, quant),
                                getattr(ar, rounding))
    return run


def _mean(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.spatial_mean(values[op.inputs[0]], quant[op.inputs[0]], quant[op.output], ar.mean)


def _max_pool(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return np.clip(k.max_pool(values[op.inputs[0]], op.attrs["kernel"], op.attrs["strides"],
                              op.attrs["pads"]), *_range(op, quant))


def _average_pool(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.average_pool(values[op.inputs[0]], op.attrs["kernel"], op.attrs["strides"],
                          op.attrs["pads"], *_range(op, quant), quant[op.output].signed)


def _pad(op, values, quant, ar):
    pads = op.attrs["pads"]
    half = len(pads) // 2
    return np.pad(values[op.inputs[0]], list(zip(pads[:half], pads[half:])),
                  constant_values=quant[op.inputs[0]].zero_point)


def _requantize(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.requantize_codes(values[op.inputs[0]], quant[op.inputs[0]], quant[op.output],
                              ar.requantize)


def _lut(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    q_in = quant[op.inputs[0]]
    name = "GELU_TANH" if op.kind.name == "GELU" and op.attrs.get("approximate") else op.kind.name
    if "table" not in op.attrs:  # built once per op, like TFLite's Prepare
        op.attrs["table"] = k.lut_table(name, q_in, quant[op.output])
    return k.lookup(values[op.inputs[0]], op.attrs["table"], q_in)


def _hard_swish(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.hard_swish(values[op.inputs[0]], quant[op.inputs[0]], quant[op.output])


def _float_island(op, values, quant, ar):
    """Dequantize the inputs, run the op in float32 as the TFLite writer decomposes it,
    quantize onto the output's encoding (a float graph skips both ends)."""
    from convdeploy.quant import float_kernels

    inputs = []
    for name in op.inputs:
        q = quant.get(name)
        v = values[name]
        inputs.append(v if q is None else
                      (v - q.zero_point).astype(np.float32) * np.float32(q.scale))
    y = float_kernels.run(op.attrs["onnx"], inputs, op.attrs)
    return y if op.output not in quant else _quantize(op, {op.inputs[0]: y}, quant, ar)


def _leaky_relu(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.leaky_relu(values[op.inputs[0]], quant[op.inputs[0]], op.attrs["alpha"],
                        quant[op.output], ar.activation)


def _prelu(op, values, quant, ar):
    from convdeploy.exporters.lowering import QParams
    from convdeploy.quant import integer_kernels as k

    alpha_q = QParams(float(np.float32(op.weight_scale.reshape(-1)[0])), 0, 8, True)
    return k.prelu(values[op.inputs[0]], quant[op.inputs[0]], op.weight, alpha_q,
                   quant[op.output], ar.activation)


def _softmax(op, values, quant, ar):
    from convdeploy.quant import integer_kernels as k

    return k.softmax(values[op.inputs[0]], quant[op.inputs[0]], quant[op.output])


_KERNELS = {
    "QUANTIZE": _quantize, "DEQUANTIZE": _dequantize, "CONV": _conv, "DEPTHWISE_CONV": _conv,
    "FULLY_CONNECTED": _fully_connected, "ADD": _binary("add", "add"),
    "SUB": _binary("sub", "add"), "MUL": _binary("mul", "mul"), "MEAN": _mean,
    "MAX_POOL": _max_pool, "AVERAGE_POOL": _average_pool, "PAD": _pad,
    "REQUANTIZE": _requantize, "LOGISTIC": _lut, "TANH": _lut, "GELU": _lut, "HARD_SWISH": _hard_swish, "SOFTMAX": _softmax,
    "FLOAT_ISLAND": _float_island, "LEAKY_RELU": _leaky_relu, "PRELU": _prelu,
    "STRIDED_SLICE": lambda op, values, quant, ar: _slice(values[op.inputs[0]], op.attrs),
    "RESHAPE": lambda op, values, quant, ar: values[op.inputs[0]].reshape(
        (values[op.inputs[0]].shape[0], *op.attrs["sample_shape"])),
    "TRANSPOSE": lambda op, values, quant, ar: values[op.inputs[0]].transpose(op.attrs["perm"]),
    "CONCATENATION": lambda op, values, quant, ar: np.concatenate(
        [values[i] for i in op.inputs], axis=op.attrs["axis"]),
}


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
        values = {self.graph.input: np.asarray(x, dtype=np.float32)}
        return self._run(values, self.graph.ops)

    def codes_from(self, tensor: str, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor downstream of ``tensor`` given its integer codes (a testbench's
        inputs: the codes an FPGA or accelerator receives)."""
        start = next(i for i, op in enumerate(self.graph.ops) if op.output == tensor) + 1
        return self._run({tensor: np.asarray(codes, dtype=np.int64)}, self.graph.ops[start:])

    def _run(self, values: dict[str, np.ndarray], ops) -> dict[str, np.ndarray]:
        from convdeploy.quant.fixed_point import TFLITE_REFERENCE

        ar = self.arithmetic or TFLITE_REFERENCE
        for op in ops:
            values[op.output] = _KERNELS[op.kind.name](op, values, self.graph.quant, ar)
        return values

    def input_shape_of(self, tensor: str) -> tuple[int, ...]:
        """One sample's shape of ``tensor``."""
        from convdeploy.exporters.opgraph import infer_shapes

        return infer_shapes(self.graph)[tensor][1:]

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
    lowers_graph = True  # its ops come from exporters/lowering.py (checked before calibration)
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
                                "ops": len(graph.ops),
                                "float_islands": graph.float_islands(),
                                "rewritten_2d": graph.rewrites()})
