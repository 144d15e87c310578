"""``gpu-triton`` / ``gpu-triton-im2win``: the lowered integer ``OpGraph`` on an NVIDIA GPU with
Triton kernels (``targets.triton_kernels``), equal to ``int-reference`` bit for bit.

It consumes exactly what the integer reference and the TFLite writer consume (the QDQ ONNX
lowered to ``OpGraph``, so the ``Encodings``' numbers and nothing re-derived): every multiplier
and shift comes from ``quant.integer_kernels``' own helpers. Compute kernels are Triton
(int8 x int8 -> int32 tensor-core GEMMs for convolutions and fully connected layers, direct
depthwise, pooling, MEAN, ADD/SUB/MUL/REQUANTIZE); ops that only move codes (pad, slice,
reshape, transpose, concat) and the 256-entry lookup tables run as torch indexing on the GPU,
which copies codes and cannot change one. ``gpu-triton`` runs dense convolutions as implicit
GEMM, ``gpu-triton-im2win`` as im2win (the window layout of Lu et al. 2023).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.quant.fixed_point import TFLITE_REFERENCE as ARITHMETIC

from .base import RuntimeOptions, TargetBase
from .cuda_device import cuda_graph, cuda_problem, event_times_ms, interpreted

_LAYOUT_ONLY = {"PAD", "STRIDED_SLICE", "RESHAPE", "TRANSPOSE", "CONCATENATION"}
_LUT = {"LOGISTIC", "TANH", "GELU"}
SUPPORTED = {"QUANTIZE", "DEQUANTIZE", "CONV", "DEPTHWISE_CONV", "FULLY_CONNECTED", "ADD", "SUB",
             "MUL", "REQUANTIZE", "MEAN", "MAX_POOL", "AVERAGE_POOL"} | _LAYOUT_ONLY | _LUT


def unsupported(graph) -> list[str]:
    """Every reason the GPU kernels cannot run ``graph``, one per op or tensor."""
    reasons = [f"{op.name}: {op.kind.value} has no gpu-triton kernel (it runs "
               f"{', '.join(sorted(SUPPORTED))})" for op in graph.ops
               if op.kind.name not in SUPPORTED]
    reasons += [f"tensor {name} has {q.bits}-bit codes; gpu-triton runs 8-bit activations"
                for name, q in graph.quant.items() if q.bits != 8]
    reasons += [f"{op.name}: negative slice steps are not supported" for op in graph.ops
                if op.kind.name == "STRIDED_SLICE" and min(op.attrs["steps"]) < 0]
    if not graph.quantized:
        reasons.append("gpu-triton runs quantized (int8) models; the float model runs on "
                       "gpu-torch")
    return reasons


def _off(q) -> int:
    """Stored int8 = code - off: uint8 codes are held shifted by 128."""
    return 0 if q.signed else 128


def _layout(ndim: int):
    """Activations' memory format: channels-last for 4-D tensors (contiguous channels are the
    kernels' K axis), plain otherwise."""
    import torch

    return torch.channels_last if ndim == 4 else torch.contiguous_format


@dataclass
class TritonRunnable:
    """Executes a lowered quantized ``OpGraph`` with Triton kernels; ``codes()`` returns every
    integer tensor in code space (as ``IntegerRunnable.codes`` does) for exactness checks."""

    graph: Any
    algorithm: str  # "implicit-gemm" | "im2win"
    threads: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .cuda_device import device

        self.device = device()
        self._graphs: dict[tuple, Callable] = {}
        self._shapes: dict[int, dict[str, tuple[int, ...]]] = {}  # per batch size
        self._steps: list[tuple[Any, Callable]] = [(op, self._prepare(op)) for op in
                                                   self.graph.ops]

    # -- execution ---------------------------------------------------------------------------
    def run_tensors(self, x) -> dict[str, Any]:
        """All tensors (stored int8 codes, float at the ends) for a float input on the device."""
        values = {self.graph.input: x}
        for op, step in self._steps:
            values[op.output] = step(values)
        return values

    def _upload(self, x: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)

    def codes(self, x: np.ndarray, only: str | None = None) -> dict[str, np.ndarray]:
        """Every tensor (or the one named ``only``) back on the host, integers as codes."""
        values = self.run_tensors(self._upload(x))
        out = {}
        for name, v in values.items():
            if only is not None and name != only:
                continue
            q = self.graph.quant.get(name)
            out[name] = (v.cpu().numpy().astype(np.int64) + _off(q) if q is not None
                         else v.cpu().numpy())
        return out

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        return self.codes(x, only=self.graph.output)

    def graphed(self, x) -> Callable:
        """The forward pass as a CUDA graph for ``x``'s shape (one launch instead of one per
        op, as a deployed runtime runs it): a function of new input of that shape."""
        key = tuple(x.shape)
        if key not in self._graphs:
            self._graphs[key] = cuda_graph(lambda t: self.run_tensors(t)[self.graph.output], x)
        return self._graphs[key]

    def device_times_ms(self, inputs: dict[str, np.ndarray], *, warmup: int, repeats: int,
                        graph: bool = True) -> np.ndarray:
        """Forward passes timed with CUDA events, the input already on the GPU; replayed as a
        CUDA graph unless ``graph`` is False (then each op is launched from Python)."""
        (x,) = inputs.values()
        xt = self._upload(x)
        fn = self.graphed(xt) if graph else self.run_tensors
        return event_times_ms(lambda: fn(xt), warmup=warmup, repeats=repeats)

    def layer_times(self, x: np.ndarray, *, repeats: int) -> list[dict]:
        """Each op's CUDA time (a CUDA graph of the op ``repeats`` times, replayed between two
        events, divided: no launch overhead) and the device memory it allocates besides its
        output (the im2win window tensor; implicit GEMM allocates none)."""
        import torch

        values = self.run_tensors(self._upload(x))
        rows = []
        for op, step in self._steps:
            if op.kind.name in ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE"):
                continue  # views: no kernel runs
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step(values)
            torch.cuda.synchronize()
            extra = torch.cuda.max_memory_allocated() - base - values[op.output].numel()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(repeats):
                    step(values)
            ms = event_times_ms(graph.replay, warmup=2, repeats=5) / repeats
            rows.append({"op": op.name, "kind": op.kind.value, "median_ms": float(np.median(ms)),
                         "workspace_bytes": int(max(extra, 0))})
            del graph
        return rows

    # -- preparation: every number on the device once, per op ---------------------------------
    def _prepare(self, op) -> Callable:
        kind = op.kind.name
        if kind in ("CONV", "DEPTHWISE_CONV", "FULLY_CONNECTED"):
            return self._prepare_weighted(op)
        return getattr(self, f"_prepare_{kind.lower()}")(op)

    def _q(self, name: str):
        return self.graph.quant[name]

    def _range(self, op) -> tuple[int, int]:
        from convdeploy.quant.fixed_point import activation_range

        q = self._q(op.output)
        return activation_range(op.activation.value, q.zero_point, q.scale, q.qmin, q.qmax)

    def _out(self, op, values):
        """An empty int8 tensor for ``op``'s output, its shape from the graph's own shape
        inference (``infer_shapes``) at the batch size being run."""
        import torch

        from convdeploy.exporters.opgraph import infer_shapes

        batch = values[self.graph.input].shape[0]
        if batch not in self._shapes:
            self._shapes[batch] = infer_shapes(self.graph, batch)
        shape = self._shapes[batch][op.output]
        return torch.empty(shape, dtype=torch.int8, device=self.device,
                           memory_format=_layout(len(shape)))

    def _prepare_quantize(self, op) -> Callable:
        import torch

        q = self._q(op.output)

        def run(values):
            # TFLite's QUANTIZE: round(x / s) in float32, half away from zero (exact in float64)
            scaled = (values[op.inputs[0]] / np.float32(q.scale)).to(torch.float64)
            rounded = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)
            codes = (rounded + q.zero_point).clamp(q.qmin, q.qmax) - _off(q)
            return codes.to(torch.int8).contiguous(memory_format=_layout(codes.ndim))
        return run

    def _prepare_dequantize(self, op) -> Callable:
        import torch

        q = self._q(op.inputs[0])
        return lambda values: (values[op.inputs[0]].to(torch.int32) + (_off(q) - q.zero_point)
                               ).to(torch.float32) * np.float32(q.scale)

    def _prepare_weighted(self, op) -> Callable:
        """CONV (dense or grouped), DEPTHWISE_CONV and FULLY_CONNECTED: int8 weights laid out
        for the kernel, the zero point's share folded into the int32 bias."""
        import torch

        from convdeploy.quant.fixed_point import wrap_int32
        from convdeploy.quant.integer_kernels import channel_multipliers

        from . import triton_kernels as tk

        q_in, q_out = self._q(op.inputs[0]), self._q(op.output)
        x_zp = q_in.zero_point - _off(q_in)
        low, high = self._range(op)
        kind = op.kind.name
        w = op.weight.astype(np.int64)
        wsum = w.reshape(w.shape[0], -1).sum(1)
        bias = np.zeros(w.shape[0], np.int64) if op.bias is None else op.bias.astype(np.int64)
        rounding = ARITHMETIC.fully_connected if kind == "FULLY_CONNECTED" else ARITHMETIC.conv
        rq = tk.Requant.build(*channel_multipliers(q_in.scale, op.weight_scale, q_out.scale),
                              rounding, self.device)
        dev = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dt)  # noqa
        corr = dev(wrap_int32(bias - x_zp * wsum), torch.int32)
        out_args = dict(y_zp=q_out.zero_point, low=low, high=high, y_off=_off(q_out))
        if kind == "FULLY_CONNECTED":
            w_kc = dev(w.T, torch.int8)

            def run_fc(values):
                x = values[op.inputs[0]]
                x2 = x.reshape(-1, x.shape[-1])
                y = self._out(op, values)
                y2 = y.view(-1, w.shape[0])
                tk.conv_gemm(x2[:, :, None, None], y2[:, :, None, None], w_kc, corr, rq,
                             kernel=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0),
                             dilations=(1, 1), x_zp=x_zp, **out_args)
                return y
            return run_fc
        a = op.attrs
        geometry = dict(kernel=w.shape[2:], strides=a["strides"], pads=a["pads"],
                        dilations=a.get("dilations", (1, 1)))
        if kind == "DEPTHWISE_CONV":
            w_tc = dev(w.reshape(w.shape[0], -1).T, torch.int8)
            return lambda values: self._conv_out(op, values, lambda x, y: tk.depthwise(
                x, y, w_tc, corr, rq, x_zp=x_zp, **geometry, **out_args))
        groups = a.get("groups", 1)
        per = w.shape[0] // groups
        # implicit GEMM: K = (kh, kw, c); im2win: K = (kw, kh, c)
        order = (2, 3, 1, 0) if self.algorithm == "implicit-gemm" else (3, 2, 1, 0)
        parts = [(dev(w[g * per:(g + 1) * per].transpose(order).reshape(-1, per), torch.int8),
                  corr[g * per:(g + 1) * per].contiguous(), rq.channels(g * per, per))
                 for g in range(groups)]

        def conv(x, y):
            cin = x.shape[1] // groups
            for g, (w_kc, c_g, rq_g) in enumerate(parts):
                xg, yg = x[:, g * cin:(g + 1) * cin], y[:, g * per:(g + 1) * per]
                if self.algorithm == "implicit-gemm":
                    tk.conv_gemm(xg, yg, w_kc, c_g, rq_g, x_zp=x_zp, **geometry, **out_args)
                else:
                    win = tk.im2win(xg, kernel=geometry["kernel"], strides=geometry["strides"],
                                    pads=geometry["pads"], dilations=geometry["dilations"],
                                    x_zp=x_zp, out_h=yg.shape[2])
                    tk.conv_im2win(win, yg, w_kc, c_g, rq_g, strides=geometry["strides"],
                                   dilations=geometry["dilations"], **out_args)
        return lambda values: self._conv_out(op, values, conv)

    def _conv_out(self, op, values, fn):
        y = self._out(op, values)
        fn(values[op.inputs[0]], y)
        return y

    def _elementwise(self, op) -> tuple[list, Callable]:
        """Operands (tensors or a constant's int8 codes) and a function giving them one shape
        and one layout, with the output allocated alike."""
        import torch

        from convdeploy.exporters.opgraph import QParams

        names: list = list(op.inputs)
        quants = [self._q(n) for n in names]
        if op.weight is not None:  # a constant: int8 codes, per-tensor symmetric
            const = torch.from_numpy(op.weight.astype(np.int8)).to(self.device)
            cq = QParams(float(np.float32(op.weight_scale.reshape(-1)[0])), 0, 8, True)
            at = 0 if op.attrs.get("constant_first") else 1
            names.insert(at, const)
            quants.insert(at, cq)

        def operands(values):
            ts = [values[n] if isinstance(n, str) else n for n in names]
            shape = torch.broadcast_shapes(*(t.shape for t in ts))
            ts = [t.expand(shape).contiguous(memory_format=_layout(len(shape))) for t in ts]
            return ts, self._out(op, values)
        return quants, operands

    def _prepare_add(self, op, negate: bool = False) -> Callable:
        from convdeploy.quant.integer_kernels import add_multipliers

        from . import triton_kernels as tk

        (a_q, b_q), operands = self._elementwise(op)
        q_out = self._q(op.output)
        m = add_multipliers(a_q, b_q, q_out, negate_second=negate)
        ra, rb, ro = (tk.Requant.build(*pair, ARITHMETIC.add, self.device)
                      for pair in (m.a, m.b, m.out))
        low, high = self._range(op)

        def run(values):
            (a, b), y = operands(values)
            tk.add(a, b, y, a_q.zero_point - _off(a_q), b_q.zero_point - _off(b_q),
                   m.left_shift, ra, rb, ro, q_out.zero_point, low, high, _off(q_out))
            return y
        return run

    def _prepare_sub(self, op) -> Callable:
        return self._prepare_add(op, negate=True)

    def _prepare_mul(self, op) -> Callable:
        from convdeploy.quant.integer_kernels import mul_multiplier

        from . import triton_kernels as tk

        (a_q, b_q), operands = self._elementwise(op)
        q_out = self._q(op.output)
        rq = tk.Requant.build(*mul_multiplier(a_q, b_q, q_out), ARITHMETIC.mul, self.device)
        low, high = self._range(op)

        def run(values):
            (a, b), y = operands(values)
            tk.mul(a, b, y, a_q.zero_point - _off(a_q), b_q.zero_point - _off(b_q), rq,
                   q_out.zero_point, low, high, _off(q_out))
            return y
        return run

    def _prepare_requantize(self, op) -> Callable:
        from convdeploy.quant.integer_kernels import codes_multiplier

        from . import triton_kernels as tk

        q_in, q_out = self._q(op.inputs[0]), self._q(op.output)
        rq = tk.Requant.build(*codes_multiplier(q_in, q_out), ARITHMETIC.requantize,
                              self.device)

        def run(values):
            x = values[op.inputs[0]].contiguous(memory_format=_layout(values[op.inputs[0]].ndim))
            y = self._out(op, values)
            tk.mul(x, None, y, q_in.zero_point - _off(q_in), 0, rq, q_out.zero_point,
                   q_out.qmin, q_out.qmax, _off(q_out))
            return y
        return run

    def _prepare_mean(self, op) -> Callable:
        import torch

        from convdeploy.quant.integer_kernels import mean_multiplier

        from . import triton_kernels as tk

        q_in, q_out = self._q(op.inputs[0]), self._q(op.output)
        plans: dict[int, tuple] = {}

        def run(values):
            x = values[op.inputs[0]].contiguous(memory_format=torch.channels_last)
            count = x.shape[2] * x.shape[3]
            if count not in plans:
                rq = tk.Requant.build(*mean_multiplier(count, q_in, q_out), ARITHMETIC.mean,
                                      self.device)
                plans[count] = (rq, (q_in.zero_point - _off(q_in)) * count)
            rq, correction = plans[count]
            y = self._out(op, values)
            tk.mean(x, y, correction, rq, q_out.zero_point, q_out.qmin, q_out.qmax,
                    _off(q_out))
            return y
        return run

    def _prepare_max_pool(self, op, average: bool = False) -> Callable:
        from . import triton_kernels as tk

        a = op.attrs
        low, high = self._range(op)
        off = _off(self._q(op.output))

        def run(values):
            y = self._out(op, values)
            tk.pool(values[op.inputs[0]], y, kernel=a["kernel"], strides=a["strides"], pads=a["pads"], low=low,
                    high=high, off=off, average=average)
            return y
        return run

    def _prepare_average_pool(self, op) -> Callable:
        return self._prepare_max_pool(op, average=True)

    def _prepare_pad(self, op) -> Callable:
        import torch

        q = self._q(op.inputs[0])
        pads = op.attrs["pads"]
        half = len(pads) // 2
        torch_pads = [p for axis in reversed(range(half)) for p in (pads[axis], pads[half + axis])]
        return lambda values: torch.nn.functional.pad(values[op.inputs[0]], torch_pads,
                                                      value=q.zero_point - _off(q))

    def _prepare_strided_slice(self, op) -> Callable:
        from .int_reference import _slice

        return lambda values: _slice(values[op.inputs[0]], op.attrs)

    def _prepare_reshape(self, op) -> Callable:
        return lambda values: values[op.inputs[0]].reshape(
            (values[op.inputs[0]].shape[0], *op.attrs["sample_shape"]))

    def _prepare_transpose(self, op) -> Callable:
        return lambda values: values[op.inputs[0]].permute(op.attrs["perm"])

    def _prepare_concatenation(self, op) -> Callable:
        import torch

        return lambda values: torch.cat([values[i] for i in op.inputs], dim=op.attrs["axis"])

    def _prepare_lut(self, op) -> Callable:
        import torch

        from convdeploy.quant import integer_kernels as k

        q_in, q_out = self._q(op.inputs[0]), self._q(op.output)
        name = "GELU_TANH" if op.kind.name == "GELU" and op.attrs.get("approximate") \
            else op.kind.name
        # index = code + 128 (int8) or code (uint8) = stored + 128 either way
        table = torch.from_numpy(k.lut_table(name, q_in, q_out) - _off(q_out)).to(
            self.device, torch.int8)
        return lambda values: table[values[op.inputs[0]].to(torch.int64) + 128]

    _prepare_logistic = _prepare_tanh = _prepare_gelu = _prepare_lut


class TritonTarget(TargetBase):
    name = "gpu-triton"
    description = ("int8 on an NVIDIA GPU with Triton kernels (implicit-GEMM convolution): "
                   "bit-exact to int-reference")
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "triton"
    runtime_package = "triton (comes with torch's CUDA builds)"
    weight_bits = (4, 8)
    activation_bits = (8,)
    runs_float = False
    lowers_graph = True  # its ops come from exporters/lowering.py (checked before calibration)
    algorithm: ClassVar[str] = "implicit-gemm"

    def unavailable(self) -> str | None:
        missing = super().unavailable()
        if missing or interpreted():
            return missing
        return cuda_problem()

    def check_ops(self, artifact: Artifact) -> list[str]:
        from convdeploy.exporters.lowering import LoweringError, lower_file

        try:
            return unsupported(lower_file(artifact.path))
        except LoweringError as exc:
            return [str(exc)]

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> TritonRunnable:
        import torch
        import triton

        from convdeploy.exporters.lowering import lower_file

        from .cuda_device import device

        graph = lower_file(artifact.path)
        dev = device()
        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
            "CPU (TRITON_INTERPRET=1: the Triton interpreter; timings mean nothing)"
        return TritonRunnable(graph, self.algorithm, options.threads,
                              {"runtime": f"triton {triton.__version__}, torch "
                                          f"{torch.__version__}", "device": gpu,
                               "convolution": self.algorithm, "ops": len(graph.ops),
                               "latency_clock": "CUDA events, input resident on the GPU"})


class TritonIm2winTarget(TritonTarget):
    name = "gpu-triton-im2win"
    description = ("int8 on an NVIDIA GPU with Triton kernels, dense convolutions as im2win "
                   "(Lu et al. 2023): bit-exact to int-reference")
    algorithm = "im2win"
