"""The layer emitters of the HLS writer: one config struct, one call and the constant arrays
per ``OpGraph`` op, every number taken from the integer reference's helpers
(``quant.integer_kernels``), and the naming rules that keep model strings out of the C++
(``exporters.hls_writer`` assembles the project from them)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .opgraph import Op, OpGraph, OpKind, QParams, infer_shapes

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


class LayerWriter:
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
        layer.config += [
            f"static const int CI = {x[1]}, HI = {x[2]}, WI = {x[3]};",
            f"static const int CO = {y[1]}, HO = {y[2]}, WO = {y[3]};",
            f"static const int KH = {w.shape[2]}, KW = {w.shape[3]}, SH = {sh}, SW = {sw};",
            f"static const int PT = {t}, PL = {l}, DH = {dh}, DW = {dw}, G = {groups};"]
        kernel = "depthwise_conv2d" if op.kind is OpKind.DEPTHWISE_CONV else "conv2d"
        self._weighted(layer, "conv", kernel, w, macs_per_pixel, mult, shift)

    _depthwise_conv = _conv

    def _fully_connected(self, layer: Layer) -> None:
        from convdeploy.quant.integer_kernels import channel_multipliers

        op = layer.op
        x = self.shapes[op.inputs[0]]
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        w = op.weight.astype(np.int64)
        mult, shift = channel_multipliers(q_in.scale, op.weight_scale, q_out.scale)
        layer.config.append(f"static const int ROWS = {int(np.prod(x[1:-1]))}, K = {x[-1]}, "
                            f"OUT = {w.shape[0]};")
        self._weighted(layer, "fully_connected", "dense", w, w.size, mult, shift)

    def _weighted(self, layer: Layer, family: str, kernel: str, w, macs_per_pixel: int, mult,
                  shift) -> None:
        """What convolutions and FC share: zero points, bias, rounding, the folding (hls4ml's
        ceil(MACs per pixel / ReuseFactor) multipliers), clamp, constants, the call."""
        op = layer.op
        q_in, q_out = self.q(op.inputs[0]), self.q(op.output)
        layer.reuse = self.folding.get(layer.ident, 1)
        layer.multipliers = -(-macs_per_pixel // layer.reuse)
        layer.config += [
            f"static const int ZP_IN = {q_in.zero_point}, ZP_OUT = {q_out.zero_point};",
            f"static const bool HAS_BIAS = {'true' if op.bias is not None else 'false'};",
            self._rounding(family), f"static const int REUSE = {layer.reuse};",
            f"static const int MULTIPLIERS = {layer.multipliers};"]
        self._out_clamp(layer, *self.clamp_range(op))
        self._weights(layer, w, op.bias, mult, shift)
        layer.call = self._weighted_call(layer, kernel, w)

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
