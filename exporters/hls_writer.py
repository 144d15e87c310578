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

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from convdeploy.files import write_text_atomic

from .hls_config import FpgaConfig, IOStyle
from .hls_layers import NAMESPACE, TOP, Layer, LayerWriter, c_type, identifier, numpy_dtype, \
    safe_text, weight_bits
from .opgraph import Op, OpGraph, OpKind, QParams, infer_shapes

__all__ = ["check_graph", "write_project", "HlsProject", "NAMESPACE", "TOP", "identifier",
           "numpy_dtype", "safe_text", "weight_bits"]

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


def write_project(graph: OpGraph, out_dir: Path, *, config: FpgaConfig = FpgaConfig(),
                  folding: dict[str, int] | None = None, arithmetic=None) -> HlsProject:
    """Write the HLS project of ``graph`` into ``out_dir`` (created; files written atomically).
    ``folding`` maps layer identifiers to ReuseFactors (default 1)."""
    problems = check_graph(graph)
    if problems:
        raise ValueError("; ".join(problems))
    writer = LayerWriter(graph, arithmetic, folding or {})
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


def _top_source(writer: LayerWriter, layers: list[Layer], in_name: str, out_name: str,
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
        lines += _partition(layer)
        lines.append(f"  {layer.call}")
        if out != out_name:
            lines.append(f"  CD_TRACE({layer.index}, {ident});")
        else:
            lines.append(f"#ifndef __SYNTHESIS__\n  if (trace_hook) trace_hook({layer.index}, "
                         f"output, sizeof(output_t) * N_OUTPUT);\n#endif")
    lines += ["}", "", f"}}  // namespace {NAMESPACE}", ""]
    return "\n".join(lines)


def _partition(layer: Layer) -> list[str]:
    """The folding's memory side: a weighted layer's multipliers each read a weight per cycle,
    so its weight array is split cyclically into that many banks (and its packed copy)."""
    if not layer.multipliers:
        return []
    size = int(layer.op.weight.size)
    factor = min(layer.multipliers, size)
    if factor <= 1:
        return []
    out = [f"#pragma HLS ARRAY_PARTITION variable=w_{layer.ident} cyclic factor={factor}"]
    if weight_bits(layer.op.weight) == 4:
        out.append(f"#pragma HLS ARRAY_PARTITION variable=w4_{layer.ident} cyclic "
                   f"factor={max(1, factor // 2)}")
    return out


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
