"""HLS C++ project writer: the lowered integer ``OpGraph`` as a Vitis-HLS-style C++ project.

The layout follows hls4ml's (write -> compile -> predict): templated kernels, one per op kind
(``hls_templates/*.h``, copied into the project), a generated ``parameters.h`` with one config
struct per layer (shapes, zero points, clamps, the folding), weights as ``int8_t`` arrays (and
packed nibbles for 4-bit layers), and a top function in its own namespace. The numbers are the
integer reference's, taken from the same helpers (``quant.integer_kernels``): multipliers and
shifts per channel, LUT tables, ADD's headroom. Nothing from the model's names reaches the C++
unsanitised: identifiers are generated (``l<index>_<safe name>``), comments carry only
``[A-Za-z0-9_.:-]``.

C-simulation runs the top function on native integer types (``types.h``); synthesis maps the
codes onto ``ap_int``/``ap_uint``. ``check_graph`` says, before any work, what cannot be
generated.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from convdeploy.files import write_text_atomic

from .hls_config import FpgaConfig, IOStyle
from .opgraph import Op, OpGraph, OpKind, QParams, infer_shapes

TEMPLATE_DIR = "hls_templates"
KERNEL_HEADERS = ("types.h", "fixed_point.h", "broadcast.h", "conv.h", "depthwise.h", "dense.h",
                  "add.h", "mul.h", "requantize.h", "activation.h", "lut.h", "mean.h", "pool.h",
                  "pad.h", "layout.h", "hard_swish.h", "softmax.h")
SUPPORTED = {OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.FULLY_CONNECTED, OpKind.ADD, OpKind.SUB,
             OpKind.MUL, OpKind.MEAN, OpKind.MAX_POOL, OpKind.AVERAGE_POOL, OpKind.PAD,
             OpKind.STRIDED_SLICE, OpKind.RESHAPE, OpKind.TRANSPOSE, OpKind.CONCATENATION,
             OpKind.REQUANTIZE, OpKind.LEAKY_RELU, OpKind.PRELU, OpKind.LOGISTIC, OpKind.TANH,
             OpKind.GELU, OpKind.HARD_SWISH, OpKind.SOFTMAX}
WEIGHTED = {OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.FULLY_CONNECTED}
_CPP_KEYWORDS = {"int", "float", "double", "char", "void", "class", "struct", "namespace",
                 "template", "typename", "return", "static", "const", "for", "if", "else",
                 "while", "do", "switch", "case", "default", "new", "delete", "this", "auto",
                 "off_t", "size_t", "main"}
_SHARED_EMITTERS = {"add": ("_binary", "add"), "sub": ("_binary", "add"),
                    "mul": ("_binary", "mul"), "max_pool": ("_pool", "max_pool"),
                    "average_pool": ("_pool", "average_pool")}
NAMESPACE = "convdeploy_model"
TOP = "model_top"


def safe_text(text: str, limit: int = 60) -> str:
    """A model-provided string as it may appear in a comment: ``[A-Za-z0-9_.:-]`` only."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", str(text))[:limit]


def identifier(index: int, name: str) -> str:
    """A C++ identifier for layer ``index``: unique by its index, readable by its name."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", str(name).encode("ascii", "ignore").decode())
    stem = stem.strip("_")[:32]
    ident = f"l{index}_{stem}" if stem else f"l{index}"
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ident) and ident not in _CPP_KEYWORDS
    return ident


def c_type(q: QParams) -> str:
    return f"cd::code<{q.bits}, {'true' if q.signed else 'false'}>::type"


def numpy_dtype(q: QParams) -> np.dtype:
    width = 8 if q.bits <= 8 else 16
    return np.dtype(f"{'int' if q.signed else 'uint'}{width}")


def weight_bits(w: np.ndarray) -> int:
    """The narrowest width holding a layer's weight codes: 4 (packable) or 8."""
    return 4 if w.size and int(np.abs(w.astype(np.int64)).max()) <= 7 else 8


def check_graph(graph: OpGraph) -> list[str]:
    """Every reason the writer cannot generate ``graph`` (op, shape, bit width); [] = it can."""
    reasons = []
    if not graph.quantized:
        return ["fpga-hls runs integer models only (export with --int8 or --scheme)"]
    ops = graph.ops
    if not ops or ops[0].kind is not OpKind.QUANTIZE or ops[-1].kind is not OpKind.DEQUANTIZE \
            or ops[-1].output != graph.output:
        reasons.append("fpga-hls expects a float input quantized once and a float output "
                       "dequantized once (QUANTIZE ... DEQUANTIZE)")
    shapes = infer_shapes(graph)
    for op in ops[1:-1]:
        label = f"{op.name} ({op.kind.value})"
        if op.kind not in SUPPORTED:
            reasons.append(f"{label}: no HLS kernel for {op.kind.value}")
            continue
        for t in (*op.inputs, op.output):
            q = graph.quant.get(t)
            if q is None:
                reasons.append(f"{label}: tensor is float inside the integer graph")
            elif q.bits not in (4, 8, 16):
                reasons.append(f"{label}: {q.bits}-bit codes (the writer has 4, 8 and 16)")
        if len(shapes[op.output]) - 1 > 4 or any(len(shapes[i]) - 1 > 4 for i in op.inputs):
            reasons.append(f"{label}: more than four dimensions per sample")
        if op.weight is not None and op.kind in WEIGHTED and \
                int(np.abs(op.weight.astype(np.int64)).max(initial=0)) > 127:
            reasons.append(f"{label}: weights wider than 8 bits")
        reasons.extend(f"{label}: {r}" for r in _op_limits(op, shapes))
    return reasons


def _op_limits(op: Op, shapes: dict) -> list[str]:
    if op.kind is OpKind.PAD and any(op.attrs["pads"][i] for i in
                                     (0, len(op.attrs["pads"]) // 2)):
        return ["padding along the batch axis"]
    if op.kind is OpKind.PAD and min(op.attrs["pads"]) < 0:
        return ["negative padding (cropping)"]
    if op.kind is OpKind.STRIDED_SLICE and 0 in op.attrs["axes"]:
        return ["slicing along the batch axis"]
    if op.kind is OpKind.TRANSPOSE and op.attrs["perm"][0] != 0:
        return ["a transpose that moves the batch axis"]
    if op.kind in (OpKind.ADD, OpKind.SUB, OpKind.MUL, OpKind.PRELU) and op.weight is not None \
            and op.weight.ndim == len(shapes[op.output]) and op.weight.shape[0] != 1:
        return ["a constant operand with a batch dimension"]
    return []


# ---- code generation -----------------------------------------------------------------------

def _dims4(shape: tuple[int, ...]) -> list[int]:
    """A per-sample shape (batch dropped) as four dimensions, ones in front."""
    dims = list(shape[1:])
    return [1] * (4 - len(dims)) + dims


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, step = [], 1
    for d in reversed(shape):
        out.insert(0, step)
        step *= d
    return out


def _broadcast_strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Per-sample strides (four dims) of an operand of ``shape`` broadcast to ``out``."""
    full = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides = [0 if d == 1 and o != 1 else s for d, o, s in zip(full, out, _strides(full))]
    strides = strides[1:]
    return [0] * (4 - len(strides)) + strides


def _array(values, per_line: int = 32) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if flat else "{0}"


def _int_list(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


@dataclass
class Layer:
    """One generated layer: its config struct, its call, its constant arrays."""

    index: int
    op: Op
    ident: str
    config: list[str] = field(default_factory=list)  # "static const int X = ...;" lines
    arrays: list[str] = field(default_factory=list)  # weight-header definitions
    structs: list[str] = field(default_factory=list)  # further config structs (CONCATENATION)
    call: str = ""
    reuse: int = 1
    multipliers: int = 0


@dataclass
class HlsProject:
    """A written project: where, what the top function reads and writes, its layers."""

    path: Path
    input_tensor: str
    output_tensor: str
    input_q: QParams
    output_q: QParams
    input_size: int
    output_size: int
    layers: list[Layer]
    traced: list[str]  # tensor names in the order the trace reports them


class _Writer:
    def __init__(self, graph: OpGraph, arithmetic, folding: dict[str, int]):
        from convdeploy.quant.fixed_point import TFLITE_REFERENCE

        self.g = graph
        self.ar = arithmetic or TFLITE_REFERENCE
        self.shapes = infer_shapes(graph)
        self.folding = folding
        self.tensor_ids: dict[str, str] = {}

    def tensor(self, name: str) -> str:
        if name not in self.tensor_ids:
            self.tensor_ids[name] = f"t{len(self.tensor_ids)}"
        return self.tensor_ids[name]

    def q(self, name: str) -> QParams:
        return self.g.quant[name]

    def clamp_range(self, op: Op) -> tuple[int, int]:
        from convdeploy.quant.fixed_point import activation_range

        q = self.q(op.output)
        return activation_range(op.activation.value, q.zero_point, q.scale, q.qmin, q.qmax)

    def layer(self, index: int, op: Op) -> Layer:
        layer = Layer(index, op, identifier(index, op.name))
        kind = op.kind.name.lower()
        if kind in _SHARED_EMITTERS:  # one emitter, the kernel's name as its argument
            emitter, kernel = _SHARED_EMITTERS[kind]
            getattr(self, emitter)(layer, kernel)
        else:
            getattr(self, f"_{kind}")(layer)
        return layer

    # -- helpers shared by the emitters
    def _io(self, layer: Layer, *names: str) -> str:
        return ", ".join(self.tensor(n) for n in names)

    def _out_clamp(self, layer: Layer, low: int, high: int) -> None:
        layer.config += [f"static const int LOW = {low};", f"static const int HIGH = {high};"]

    def _rounding(self, family: str) -> str:
        return f"static const int ROUNDING = cd::{getattr(self.ar, family).name};"

    # -- emitters, one per op kind
    def _conv(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import channel_multipliers

        op = layer.op
        x, y = self.shapes[op.inputs[0]], self.shapes[op.output]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        w = op.weight.astype(np.int64)
        groups = x[1] if op.kind is OpKind.DEPTHWISE_CONV else op.attrs.get("groups", 1)
        t, l, _, _ = op.attrs["pads"]
        sh, sw = op.attrs["strides"]
        dh, dw = op.attrs.get("dilations", (1, 1))
        mult, shift = channel_multipliers(q_in.scale, op.weight_scale, q_out.scale)
        macs_per_pixel = int(np.prod(w.shape))
        layer.reuse = self.folding.get(layer.ident, 1)
        layer.multipliers = -(-macs_per_pixel // layer.reuse)
        layer.config += [
            f"static const int CI = {x[1]}, HI = {x[2]}, WI = {x[3]};",
            f"static const int CO = {y[1]}, HO = {y[2]}, WO = {y[3]};",
            f"static const int KH = {w.shape[2]}, KW = {w.shape[3]}, SH = {sh}, SW = {sw};",
            f"static const int PT = {t}, PL = {l}, DH = {dh}, DW = {dw}, G = {groups};",
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const bool HAS_BIAS = {'true' if op.bias is not None else 'false'};",
            self._rounding("conv"), f"static const int REUSE = {layer.reuse};",
            f"static const int MULTIPLIERS = {layer.multipliers};"]
        self._out_clamp(layer, *self.clamp_range(op))
        self._weights(layer, w, op.bias, mult, shift)
        kernel = "depthwise_conv2d" if op.kind is OpKind.DEPTHWISE_CONV else "conv2d"
        layer.call = self._weighted_call(layer, kernel, w)

    _depthwise_conv = _conv

    def _fully_connected(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import channel_multipliers

        op = layer.op
        x = self.shapes[op.inputs[0]]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        w = op.weight.astype(np.int64)
        mult, shift = channel_multipliers(q_in.scale, op.weight_scale, q_out.scale)
        layer.reuse = self.folding.get(layer.ident, 1)
        layer.multipliers = -(-w.size // layer.reuse)
        layer.config += [
            f"static const int ROWS = {int(np.prod(x[1:-1]))}, K = {x[-1]}, OUT = {w.shape[0]};",
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const bool HAS_BIAS = {'true' if op.bias is not None else 'false'};",
            self._rounding("fully_connected"), f"static const int REUSE = {layer.reuse};",
            f"static const int MULTIPLIERS = {layer.multipliers};"]
        self._out_clamp(layer, *self.clamp_range(op))
        self._weights(layer, w, op.bias, mult, shift)
        layer.call = self._weighted_call(layer, "dense", w)

    def _weights(self, layer: Layer, w, bias, mult, shift) -> None:
        ident = layer.ident
        if np.any(np.abs(shift) > 31) or np.any(shift > 30):
            raise ValueError(f"{layer.op.name}: requantization shift out of range")
        layer.arrays.append(f"static const int8_t w_{ident}[{w.size}] = {_array(w)};")
        if weight_bits(w) == 4:
            nibbles = (w.reshape(-1) & 15).astype(np.uint8)
            if nibbles.size % 2:
                nibbles = np.append(nibbles, np.uint8(0))
            packed = nibbles[0::2] | (nibbles[1::2] << 4)
            layer.arrays.append(f"static const uint8_t w4_{ident}[{packed.size}] = "
                                f"{_array(packed)};")
        if bias is not None:
            layer.arrays.append(f"static const cd::bias_t b_{ident}[{bias.size}] = "
                                f"{_array(bias)};")
        layer.arrays += [f"static const int32_t m_{ident}[{mult.size}] = {_array(mult)};",
                         f"static const int8_t s_{ident}[{shift.size}] = {_array(shift)};"]

    def _weighted_call(self, layer: Layer, kernel: str, w) -> str:
        ident, op = layer.ident, layer.op
        bias = f"b_{ident}" if op.bias is not None else "nullptr"
        io = self._io(layer, op.inputs[0], op.output)
        plain = (f"cd::{kernel}<{ident}_config>({io}, cd::weights_i8{{w_{ident}}}, {bias}, "
                 f"m_{ident}, s_{ident});")
        if weight_bits(w) != 4:
            return plain
        packed = (f"cd::{kernel}<{ident}_config>({io}, cd::weights_i4{{w4_{ident}}}, {bias}, "
                  f"m_{ident}, s_{ident});")
        return f"#if CONVDEPLOY_PACKED_W4\n  {packed}\n#else\n  {plain}\n#endif"

    def _binary(self, layer: Layer, kernel: str) -> None:
        from convdeploy.quant import integer_kernels as k

        op = layer.op
        out = self.shapes[op.output]
        operands = [(self.tensor(i), self.shapes[i], self.q(i)) for i in op.inputs]
        if op.weight is not None:
            cq = QParams(float(np.float32(op.weight_scale.reshape(-1)[0])), 0, 8, True)
            layer.arrays.append(f"static const int8_t c_{layer.ident}[{op.weight.size}] = "
                                f"{_array(op.weight)};")
            const = (f"c_{layer.ident}", tuple(op.weight.shape), cq)
            operands.insert(0 if op.attrs.get("constant_first") else 1, const)
        (a, a_shape, a_q), (b, b_shape, b_q) = operands
        q_out = self.q(op.output)
        layer.config += [f"static constexpr int D[4] = {_int_list(_dims4(out))};",
                         f"static constexpr int SA[4] = "
                         f"{_int_list(_broadcast_strides(a_shape, out))};",
                         f"static constexpr int SB[4] = "
                         f"{_int_list(_broadcast_strides(b_shape, out))};",
                         f"static const int ZP_A = {a_q.zero_point}, ZP_B = {b_q.zero_point};",
                         f"static const int ZP_OUT = {q_out.zero_point};"]
        if kernel == "mul":
            m, s = k.mul_multiplier(a_q, b_q, q_out)
            layer.config += [f"static const int32_t M = {m}; static const int SH = {s};",
                             self._rounding("mul")]
        else:
            m = k.add_multipliers(a_q, b_q, q_out, negate_second=op.kind is OpKind.SUB)
            layer.config += [f"static const int LEFT = {m.left_shift};",
                             f"static const int32_t MA = {m.a[0]}; static const int SHA = {m.a[1]};",
                             f"static const int32_t MB = {m.b[0]}; static const int SHB = {m.b[1]};",
                             f"static const int32_t MO = {m.out[0]}; "
                             f"static const int SHO = {m.out[1]};", self._rounding("add")]
        self._out_clamp(layer, *self.clamp_range(op))
        layer.call = (f"cd::{kernel}<{layer.ident}_config>({a}, {b}, "
                      f"{self.tensor(op.output)});")

    def _elementwise(self, layer: Layer, kernel: str, extra: list[str], *args: str) -> None:
        op = layer.op
        n = int(np.prod(self.shapes[op.output][1:]))
        layer.config += [f"static const int N = {n};", *extra]
        io = ", ".join((self.tensor(op.inputs[0]), *args, self.tensor(op.output)))
        layer.call = f"cd::{kernel}<{layer.ident}_config>({io});"

    def _requantize(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import codes_multiplier

        op = layer.op
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        m, s = codes_multiplier(q_in, q_out)
        self._elementwise(layer, "requantize", [
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const int32_t M = {m}; static const int SH = {s};",
            self._rounding("requantize"), f"static const int LOW = {q_out.qmin};",
            f"static const int HIGH = {q_out.qmax};"])

    def _leaky_relu(self, layer: Layer) -> None:
        from convdeploy.quant.fixed_point import quantize_multiplier

        op = layer.op
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        real = [float(np.float64(np.float32(v))) for v in (q_in.scale, op.attrs["alpha"],
                                                           q_out.scale)]
        m1, s1 = quantize_multiplier(real[0] / real[2])
        m2, s2 = quantize_multiplier(real[0] * real[1] / real[2])
        self._elementwise(layer, "leaky_relu", [
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const int32_t M1 = {m1}, M2 = {m2}; static const int SH1 = {s1}, "
            f"SH2 = {s2};", self._rounding("activation"),
            f"static const int LOW = {q_out.qmin}, HIGH = {q_out.qmax};"])

    def _prelu(self, layer: Layer) -> None:
        from convdeploy.quant.fixed_point import quantize_multiplier

        op = layer.op
        out = self.shapes[op.output]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        s_in, s_out = (float(np.float64(np.float32(v))) for v in (q_in.scale, q_out.scale))
        s_a = float(np.float64(np.float32(op.weight_scale.reshape(-1)[0])))
        m1, s1 = quantize_multiplier(s_in / s_out)
        m2, s2 = quantize_multiplier(s_in * s_a / s_out)
        layer.arrays.append(f"static const int8_t a_{layer.ident}[{op.weight.size}] = "
                            f"{_array(op.weight)};")
        layer.config += [
            f"static constexpr int D[4] = {_int_list(_dims4(out))};",
            f"static constexpr int SA[4] = "
            f"{_int_list(_broadcast_strides(tuple(op.weight.shape), out))};",
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point}, "
            f"ZP_ALPHA = 0;",
            f"static const int32_t M1 = {m1}, M2 = {m2}; static const int SH1 = {s1}, "
            f"SH2 = {s2};", self._rounding("activation"),
            f"static const int LOW = {q_out.qmin}, HIGH = {q_out.qmax};"]
        layer.call = (f"cd::prelu<{layer.ident}_config>({self.tensor(op.inputs[0])}, "
                      f"a_{layer.ident}, {self.tensor(op.output)});")

    def _lut(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import lut_table

        op = layer.op
        q_in = self.q(op.inputs[0])
        name = "GELU_TANH" if op.kind is OpKind.GELU and op.attrs.get("approximate") \
            else op.kind.name
        table = lut_table(name, q_in, self.q(op.output))
        layer.arrays.append(f"static const int16_t lut_{layer.ident}[256] = {_array(table)};")
        self._elementwise(layer, "lut", [f"static const int OFFSET = "
                                         f"{128 if q_in.signed else 0};"], f"lut_{layer.ident}")

    _logistic = _tanh = _gelu = _lut

    def _hard_swish(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import hard_swish_multipliers

        op = layer.op
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        out_mult, out_exp, relu_mult, relu_exp = hard_swish_multipliers(q_in, q_out)
        self._elementwise(layer, "hard_swish", [
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const int OUT_MULT = {out_mult}, OUT_EXP = {out_exp};",
            f"static const int RELU_MULT = {relu_mult}, RELU_EXP = {relu_exp};",
            f"static const int LOW = {q_out.qmin}, HIGH = {q_out.qmax};"])

    def _softmax(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import softmax_multiplier

        op = layer.op
        x = self.shapes[op.inputs[0]]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        mult, left, radius = softmax_multiplier(q_in)
        layer.config += [
            f"static const int ROWS = {int(np.prod(x[1:-1]))}, DEPTH = {x[-1]};",
            f"static const int32_t MULT = {mult}; static const int LEFT = {left};",
            f"static const int64_t RADIUS = {radius};",
            f"static const int SHIFT_IN = {0 if q_in.signed else 128}, "
            f"SHIFT_OUT = {0 if q_out.signed else 128};"]
        layer.call = (f"cd::softmax<{layer.ident}_config>("
                      f"{self._io(layer, op.inputs[0], op.output)});")

    def _mean(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import mean_multiplier

        op = layer.op
        x = self.shapes[op.inputs[0]]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        m, s = mean_multiplier(x[2] * x[3], q_in, q_out)
        layer.config += [f"static const int C = {x[1]}, H = {x[2]}, W = {x[3]};",
                         f"static const int ZP_IN = {q_in.zero_point}, "
                         f"ZP_OUT = {q_out.zero_point};",
                         f"static const int32_t M = {m}; static const int SH = {s};",
                         self._rounding("mean")]
        self._out_clamp(layer, q_out.qmin, q_out.qmax)
        layer.call = f"cd::mean<{layer.ident}_config>({self._io(layer, op.inputs[0], op.output)});"

    def _pool(self, layer: Layer, kernel: str) -> None:
        op = layer.op
        x, y = self.shapes[op.inputs[0]], self.shapes[op.output]
        kh, kw = op.attrs["kernel"]
        t, l, _, _ = op.attrs["pads"]
        sh, sw = op.attrs["strides"]
        layer.config += [f"static const int C = {x[1]}, HI = {x[2]}, WI = {x[3]};",
                         f"static const int HO = {y[2]}, WO = {y[3]}, KH = {kh}, KW = {kw};",
                         f"static const int SH = {sh}, SW = {sw}, PT = {t}, PL = {l};",
                         f"static const int SHIFT = {0 if self.q(op.output).signed else 128};"]
        self._out_clamp(layer, *self.clamp_range(op))
        layer.call = (f"cd::{kernel}<{layer.ident}_config>("
                      f"{self._io(layer, op.inputs[0], op.output)});")

    def _pad(self, layer: Layer) -> None:
        op = layer.op
        x, y = self.shapes[op.inputs[0]], self.shapes[op.output]
        half = len(op.attrs["pads"]) // 2
        begins = list(op.attrs["pads"][1:half])
        layer.config += [f"static constexpr int D[4] = {_int_list(_dims4(x))};",
                         f"static constexpr int O[4] = {_int_list(_dims4(y))};",
                         f"static constexpr int B[4] = "
                         f"{_int_list([0] * (4 - len(begins)) + begins)};",
                         f"static const int ZP = {self.q(op.inputs[0]).zero_point};"]
        layer.call = f"cd::pad<{layer.ident}_config>({self._io(layer, op.inputs[0], op.output)});"

    def _copy(self, layer: Layer, dims: list[int], strides: list[int], start: int) -> None:
        op = layer.op
        layer.config += [f"static constexpr int D[4] = {_int_list(dims)};",
                         f"static constexpr int S[4] = {_int_list(strides)};",
                         f"static const int START = {start};"]
        layer.call = (f"cd::strided_copy<{layer.ident}_config>("
                      f"{self._io(layer, op.inputs[0], op.output)});")

    def _reshape(self, layer: Layer) -> None:
        n = int(np.prod(self.shapes[layer.op.output][1:]))
        self._copy(layer, [1, 1, 1, n], [0, 0, 0, 1], 0)

    def _transpose(self, layer: Layer) -> None:
        op = layer.op
        x = self.shapes[op.inputs[0]]
        in_strides = _strides(x)
        perm = list(op.attrs["perm"])[1:]
        dims = [x[p] for p in perm]
        strides = [in_strides[p] for p in perm]
        pad = 4 - len(dims)
        self._copy(layer, [1] * pad + dims, [0] * pad + strides, 0)

    def _strided_slice(self, layer: Layer) -> None:
        op = layer.op
        x = self.shapes[op.inputs[0]]
        in_strides = _strides(x)
        starts, steps, dims = [0] * len(x), [1] * len(x), list(x)
        for start, end, axis, step in zip(*(op.attrs[k] for k in
                                            ("starts", "ends", "axes", "steps"))):
            end = min(end, x[axis]) if end > 0 else end
            r = range(x[axis])[slice(start, end, step)]
            starts[axis], steps[axis], dims[axis] = r.start, r.step, len(r)
        start = sum(s * st for s, st in zip(starts, in_strides))
        strides = [st * sp for st, sp in zip(in_strides, steps)][1:]
        pad = 4 - len(strides)
        self._copy(layer, [1] * pad + dims[1:], [0] * pad + strides, start)

    def _concatenation(self, layer: Layer) -> None:
        op = layer.op
        y = self.shapes[op.output]
        axis = op.attrs["axis"] % len(y)
        after = int(np.prod(y[axis + 1:]))
        outer = int(np.prod(y[1:axis]))
        calls, offset = [], 0
        for k, name in enumerate(op.inputs):
            inner = self.shapes[name][axis] * after
            struct = f"{layer.ident}_part{k}"
            layer.structs.append(
                f"struct {struct} {{\n  static const int OUTER = {outer}, INNER = {inner}, "
                f"STRIDE = {y[axis] * after}, OFFSET = {offset};\n}};")
            calls.append(f"cd::concat_part<{struct}>({self.tensor(name)}, "
                         f"{self.tensor(op.output)});")
            offset += inner
        layer.call = "\n  ".join(calls)


def write_project(graph: OpGraph, out_dir: Path, *, config: FpgaConfig = FpgaConfig(),
                  folding: dict[str, int] | None = None, arithmetic=None) -> HlsProject:
    """Write the HLS project of ``graph`` into ``out_dir`` (created; files written atomically).
    ``folding`` maps layer identifiers to ReuseFactors (default 1)."""
    problems = check_graph(graph)
    if problems:
        raise ValueError("; ".join(problems))
    writer = _Writer(graph, arithmetic, folding or {})
    body = graph.ops[1:-1]
    in_name, out_name = graph.ops[0].output, graph.ops[-1].inputs[0]
    writer.tensor(in_name)
    layers = [writer.layer(i, op) for i, op in enumerate(body)]
    out_dir = Path(out_dir)
    firmware = out_dir / "firmware"
    (firmware / "convdeploy").mkdir(parents=True, exist_ok=True)
    (firmware / "weights").mkdir(exist_ok=True)
    templates = resources.files("convdeploy.exporters") / TEMPLATE_DIR
    for header in KERNEL_HEADERS:
        with resources.as_file(templates / header) as src:
            shutil.copyfile(src, firmware / "convdeploy" / header)
    q_in, q_out = graph.quant[in_name], graph.quant[out_name]
    shapes = writer.shapes
    n_in, n_out = (int(np.prod(shapes[n][1:])) for n in (in_name, out_name))
    for layer in layers:
        write_text_atomic(firmware / "weights" / f"{layer.ident}.h", _weights_header(layer))
    write_text_atomic(firmware / "parameters.h", _parameters(layers))
    write_text_atomic(firmware / f"{TOP}.h", _top_header(q_in, q_out, n_in, n_out))
    write_text_atomic(firmware / f"{TOP}.cpp",
                      _top_source(writer, layers, in_name, out_name, config))
    write_text_atomic(out_dir / "bridge.cpp", BRIDGE)
    traced = [op.output for op in body]
    return HlsProject(out_dir, in_name, out_name, q_in, q_out, n_in, n_out, layers, traced)


def _weights_header(layer: Layer) -> str:
    guard = f"CONVDEPLOY_W_{layer.ident.upper()}_H"
    return (f"// constants of layer {layer.index} ({safe_text(layer.op.name)}, "
            f"{layer.op.kind.value})\n#ifndef {guard}\n#define {guard}\n#include <cstdint>\n"
            f"#include \"../convdeploy/types.h\"\nnamespace {NAMESPACE} {{\n"
            + "\n".join(layer.arrays) + f"\n}}  // namespace {NAMESPACE}\n#endif\n")


def _parameters(layers: list[Layer]) -> str:
    structs = []
    for layer in layers:
        structs.append(f"// layer {layer.index}: {safe_text(layer.op.name)} "
                       f"({layer.op.kind.value})\nstruct {layer.ident}_config {{\n  "
                       + "\n  ".join(layer.config) + "\n};")
        structs.extend(layer.structs)
    return ("// Generated by convdeploy: one config struct per layer (shapes, zero points, "
            "clamps, folding).\n#ifndef CONVDEPLOY_PARAMETERS_H\n#define "
            "CONVDEPLOY_PARAMETERS_H\n#include \"convdeploy/fixed_point.h\"\n"
            f"namespace {NAMESPACE} {{\n" + "\n".join(structs)
            + f"\n}}  // namespace {NAMESPACE}\n#endif\n")


def _top_header(q_in: QParams, q_out: QParams, n_in: int, n_out: int) -> str:
    return (f"#ifndef CONVDEPLOY_TOP_H\n#define CONVDEPLOY_TOP_H\n#include \"convdeploy/types.h\"\n"
            f"namespace {NAMESPACE} {{\ntypedef {c_type(q_in)} input_t;\n"
            f"typedef {c_type(q_out)} output_t;\nstatic const int N_INPUT = {n_in};\n"
            f"static const int N_OUTPUT = {n_out};\n"
            f"void {TOP}(const input_t input[N_INPUT], output_t output[N_OUTPUT]);\n"
            "#ifndef __SYNTHESIS__\n// C-simulation only: called after every layer with its "
            "index and output (the per-op trace).\nextern void (*trace_hook)(int layer, "
            "const void* data, int bytes);\n#endif\n"
            f"}}  // namespace {NAMESPACE}\n#endif\n")


def _top_source(writer: _Writer, layers: list[Layer], in_name: str, out_name: str,
                config: FpgaConfig) -> str:
    lines = [f"// Generated by convdeploy: the model's {len(layers)} layers as one top "
             "function.", f"#include \"{TOP}.h\"", "#include \"parameters.h\""]
    lines += [f"#include \"convdeploy/{h}\"" for h in KERNEL_HEADERS[3:]]
    lines += [f"#include \"weights/{layer.ident}.h\"" for layer in layers]
    lines += ["", "#ifdef __SYNTHESIS__", "#define CD_BUFFER", "#else",
              "#define CD_BUFFER static thread_local  // C-simulation: one set per thread",
              "#endif", "", f"namespace {NAMESPACE} {{", "",
              "#ifndef __SYNTHESIS__", "void (*trace_hook)(int, const void*, int) = nullptr;",
              "#define CD_TRACE(i, t) if (trace_hook) trace_hook(i, t, sizeof(t))",
              "#else", "#define CD_TRACE(i, t)", "#endif", "",
              f"void {TOP}(const input_t input[N_INPUT], output_t output[N_OUTPUT]) {{"]
    if config.io is IOStyle.STREAM:
        lines.append("#pragma HLS DATAFLOW")
    lines.append("#pragma HLS INTERFACE mode=ap_memory port=input\n"
                 "#pragma HLS INTERFACE mode=ap_memory port=output")
    t_in = writer.tensor(in_name)
    lines.append(f"  const input_t* {t_in} = input;")
    for layer in layers:
        out = layer.op.output
        ident = writer.tensor(out)
        if out != out_name:
            size = int(np.prod(writer.shapes[out][1:]))
            lines.append(f"  CD_BUFFER {c_type(writer.q(out))} {ident}[{size}];")
        else:
            lines.append(f"  output_t* {ident} = output;")
        lines.append(f"  // layer {layer.index}: {safe_text(layer.op.name)} "
                     f"({layer.op.kind.value})")
        lines.append(f"  {layer.call}")
        if out != out_name:
            lines.append(f"  CD_TRACE({layer.index}, {ident});")
        else:
            lines.append(f"#ifndef __SYNTHESIS__\n  if (trace_hook) trace_hook({layer.index}, "
                         f"output, sizeof(output_t) * N_OUTPUT);\n#endif")
    lines += ["}", "", f"}}  // namespace {NAMESPACE}", ""]
    return "\n".join(lines)


BRIDGE = f"""// C-simulation bridge (not synthesised): whole batches through the top function, for
// ctypes. Samples run in parallel with OpenMP when the library is built with -fopenmp.
#include <cstdint>
#include "firmware/{TOP}.h"

using namespace {NAMESPACE};

#define CD_EXPORT __attribute__((visibility("default")))

extern "C" {{
CD_EXPORT int cd_input_size() {{ return N_INPUT; }}
CD_EXPORT int cd_output_size() {{ return N_OUTPUT; }}
CD_EXPORT int cd_run(const void* in, void* out, int n, int threads) {{
  const input_t* x = static_cast<const input_t*>(in);
  output_t* y = static_cast<output_t*>(out);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int i = 0; i < n; ++i) {TOP}(x + (long)i * N_INPUT, y + (long)i * N_OUTPUT);
  return 0;
}}
CD_EXPORT void cd_set_trace(void (*hook)(int, const void*, int)) {{ trace_hook = hook; }}
}}
"""
