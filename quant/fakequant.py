"""Fake-quant modules: the torch simulation of the numerics contract.

One quantizer module stands at every quantized value of the graph. Its ``mode`` decides what it
does, so one graph serves as float reference, calibration probe, simulation and export source:

- ``OFF``: identity (the float model, BatchNorm folded);
- ``OBSERVE``: identity, and its observer records the value range (calibration);
- ``QUANT``: fake quantization ``(clamp(round(x / s) + zp) - zp) * s`` with a straight-through
  gradient for the rounding (QAT-ready);
- ``MARKER``: a ``convdeploy::qpoint(x, key)`` op that exports to ONNX as a named marker node,
  which the QDQ exporter swaps for QuantizeLinear/DequantizeLinear carrying the encoding's numbers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from .encodings import TensorEncoding, TensorKind
from .fixed_point import MIN_REQUANT_MULTIPLIER
from .observers import RangeObserver, affine_params, symmetric_params
from .scheme import TensorQuant


@torch.library.custom_op("convdeploy::qpoint", mutates_args=())
def qpoint(x: torch.Tensor, key: str) -> torch.Tensor:
    """Export marker: identity in torch, a ``convdeploy.QPoint(key=...)`` node in ONNX."""
    return x.clone()


@qpoint.register_fake
def _qpoint_fake(x: torch.Tensor, key: str) -> torch.Tensor:
    return torch.empty_like(x)


class Mode(str, Enum):
    OFF = "off"
    OBSERVE = "observe"
    QUANT = "quant"
    MARKER = "marker"


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    # torch.round is round-half-to-even, like ONNX QuantizeLinear and numpy.
    return v + (torch.round(v) - v).detach()


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                  qmin: int, qmax: int) -> torch.Tensor:
    """``(clamp(round(x / s) + zp, qmin, qmax) - zp) * s``; scale/zero_point broadcast to x."""
    q = torch.clamp(_round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


class Quantizer(nn.Module):
    """Base of the three quantizer kinds; ``key`` is the encoding's stable name."""

    kind: TensorKind

    def __init__(self, key: str, tq: TensorQuant, *, module: str = "") -> None:
        super().__init__()
        self.key = key
        self.tq = tq
        self.module_path = module
        self.mode = Mode.OFF
        self.tensors: list[str] = []  # graph values this quantizer stands at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is Mode.OFF:
            return x
        if self.mode is Mode.MARKER:
            return torch.ops.convdeploy.qpoint(x, self.key)
        if self.mode is Mode.OBSERVE:
            self.observe(x)
            return x
        scale, zero_point = self.qparams(x)
        return fake_quantize(x, scale, zero_point, self.qmin, self.qmax)

    @property
    def qmin(self) -> int:
        return self.tq.qmin

    @property
    def qmax(self) -> int:
        return self.tq.qmax

    def observe(self, x: torch.Tensor) -> None:
        """Activations record ranges; weights and biases need no data."""

    def qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encoding(self) -> TensorEncoding:
        raise NotImplementedError


class ActivationQuantizer(Quantizer):
    """Per-tensor asymmetric (or symmetric) activation quantizer with a calibrated range, or
    with the range an integer kernel fixes (``fixed``: the real interval it covers, and why)."""

    kind = TensorKind.ACTIVATION

    def __init__(self, key: str, tq: TensorQuant, *, module: str = "",
                 fixed: "FixedRange | None" = None) -> None:
        super().__init__(key, tq, module=module)
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.calibrated = False
        self.observer = RangeObserver()
        self.fixed = fixed
        if fixed is not None:
            scale, zero_point = fixed.params(tq)
            self.scale.fill_(scale)
            self.zero_point.fill_(zero_point)
            self.calibrated = True

    def observe(self, x: torch.Tensor) -> None:
        self.observer.update(x.detach())

    def set_range(self, lo: float, hi: float) -> None:
        if self.fixed is not None:  # the kernel's encoding, whatever the data
            return
        scale, zero_point = affine_params(lo, hi, self.tq)
        self.scale.fill_(scale)
        self.zero_point.fill_(zero_point)
        self.calibrated = True

    def qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.calibrated:
            raise RuntimeError(f"activation quantizer {self.key!r} was never calibrated")
        return self.scale, self.zero_point

    def encoding(self) -> TensorEncoding:
        enc = TensorEncoding.from_arrays(
            self.kind, self.tq, self.scale.item(), int(self.zero_point.item()),
            module=self.module_path, tensors=tuple(self.tensors))
        if self.fixed is None:
            return enc
        return dataclasses.replace(enc, constraint=self.fixed.reason)


@dataclass(frozen=True)
class FixedRange:
    """An output encoding an integer kernel requires: ``[low, low + 256 * step)`` on an 8-bit
    grid, e.g. TFLite's int8 LOGISTIC writes ``sigmoid(x)`` with scale 1/256 and zero point
    -128 (uint8: 0), TANH with scale 1/128 and zero point 0 (uint8: 128)."""

    low: float
    step: float
    reason: str

    def params(self, tq: TensorQuant) -> tuple[float, int]:
        if tq.bits != 8:
            raise ValueError(f"{self.reason}: defined for 8-bit activations only")
        base = -128 if tq.signed else 0
        return self.step, int(round(base - self.low / self.step))


class WeightQuantizer(Quantizer):
    """Symmetric weight quantizer, per output channel (axis 0) or per tensor.

    The scale is set from the weight itself (``init_from``); a conv weight is OIHW and a linear
    weight is [out, in], so the output channel is axis 0 for both. Once the activations are
    calibrated, ``floor_scale`` raises channels whose requantization multiplier would fall below
    the contract's ``MIN_REQUANT_MULTIPLIER``.
    """

    kind = TensorKind.WEIGHT
    axis = 0

    def __init__(self, key: str, tq: TensorQuant, *, module: str = "") -> None:
        super().__init__(key, tq, module=module)
        self.register_buffer("scale", torch.ones(1))
        self.initialised = False
        # (input, output) activation quantizers of each layer using this weight: a plain list,
        # so the tied quantizers are not registered twice in the module tree
        self.requant: list[tuple[ActivationQuantizer, ActivationQuantizer]] = []

    @torch.no_grad()
    def floor_scale(self) -> int:
        """Raise every channel scale below ``MIN_REQUANT_MULTIPLIER * s_out / s_in`` (the largest
        over the layers sharing this weight) to it; returns how many channels rose."""
        tied = [(i, o) for i, o in self.requant if i.calibrated and o.calibrated]
        if not tied:
            return 0
        floor = max(MIN_REQUANT_MULTIPLIER * float(o.scale) / float(i.scale) for i, o in tied)
        low = self.scale < floor
        if bool(low.any()):
            self.scale.copy_(torch.where(low, torch.full_like(self.scale, floor), self.scale))
        return int(low.sum())

    def init_from(self, weight: torch.Tensor) -> None:
        w = weight.detach()
        if self.tq.per_channel:
            absmax = w.abs().reshape(w.shape[0], -1).amax(dim=1)
        else:
            absmax = w.abs().amax().reshape(1)
        self.scale = symmetric_params(absmax, self.tq).to(w.dtype)
        self.initialised = True

    def qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.initialised:
            self.init_from(x)
        shape = [-1] + [1] * (x.dim() - 1)
        scale = self.scale.reshape(shape) if self.tq.per_channel else self.scale.reshape(())
        return scale, torch.zeros((), dtype=x.dtype)

    def encoding(self) -> TensorEncoding:
        n = self.scale.numel()
        return TensorEncoding.from_arrays(
            self.kind, self.tq, self.scale.detach().double().numpy(), [0] * n,
            axis=self.axis if self.tq.per_channel else None, module=self.module_path,
            tensors=tuple(self.tensors))


class BiasQuantizer(Quantizer):
    """int32 bias with scale ``s_input * s_weight[c]`` and zero point 0 (DESIGN.md contract).

    Its scale follows the input and weight quantizers it is tied to, so it stays right when
    those change (calibration, QAT).
    """

    kind = TensorKind.BIAS
    axis = 0
    QMAX = 2**31 - 1

    def __init__(self, key: str, input_q: ActivationQuantizer, weight_q: WeightQuantizer,
                 channels: int, *, module: str = "") -> None:
        super().__init__(key, weight_q.tq, module=module)
        self.channels = channels
        # A plain tuple, so the tied quantizers are not registered twice in the module tree.
        self._tied = (input_q, weight_q)

    @property
    def qmin(self) -> int:
        return -self.QMAX

    @property
    def qmax(self) -> int:
        return self.QMAX

    def bias_scale(self) -> torch.Tensor:
        input_q, weight_q = self._tied
        return (input_q.scale * weight_q.scale).reshape(-1).expand(self.channels)

    def qparams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bias_scale().to(x.dtype), torch.zeros((), dtype=x.dtype)

    def encoding(self) -> TensorEncoding:
        scale = self.bias_scale().detach().double().numpy()
        return TensorEncoding(
            kind=self.kind, bits=32, signed=True, qmin=-self.QMAX, qmax=self.QMAX,
            scale=tuple(scale.tolist()), zero_point=(0,) * scale.size, axis=self.axis,
            module=self.module_path, tensors=tuple(self.tensors))
