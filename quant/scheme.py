"""Quantization schemes: how each kind of tensor is quantized (frozen, typed config)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum


class Calibration(str, Enum):
    """How an activation's clipping range is chosen from calibration data."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"


@dataclass(frozen=True)
class TensorQuant:
    """How one tensor is quantized.

    Weights are symmetric per output channel (zero point 0); activations asymmetric per tensor.
    ``narrow_range`` drops the most negative code so that a symmetric grid is balanced
    (int8 weights live in [-127, 127], as in the whitepaper and TFLite).
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = True
    signed: bool = True
    narrow_range: bool = True

    def __post_init__(self) -> None:
        if self.bits not in (4, 8, 16):
            raise ValueError(f"bits must be 4, 8 or 16, got {self.bits}")
        if self.symmetric and not self.signed:
            raise ValueError("a symmetric grid needs signed codes (zero point 0)")

    @property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        low = -(2 ** (self.bits - 1))
        return low + 1 if self.narrow_range else low

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def dtype_name(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"


# Activations: asymmetric uint8. onnxruntime on x86 fuses QDQ convolutions into integer kernels
# only with uint8 activations; OpenVINO and TFLite take either.
UINT8_ACT = TensorQuant(bits=8, symmetric=False, per_channel=False, signed=False, narrow_range=False)
INT8_ACT = TensorQuant(bits=8, symmetric=False, per_channel=False, signed=True, narrow_range=False)
INT8_WEIGHT_PER_CHANNEL = TensorQuant(bits=8, symmetric=True, per_channel=True)
INT8_WEIGHT_PER_TENSOR = TensorQuant(bits=8, symmetric=True, per_channel=False)


@dataclass(frozen=True)
class QuantScheme:
    """A whole-model quantization recipe.

    ``exclude`` names layers (module paths such as ``layer3.2.conv2`` or ``linear``) kept in float.
    ``activations=None`` means weight-only quantization.
    """

    weights: TensorQuant = INT8_WEIGHT_PER_CHANNEL
    activations: TensorQuant | None = UINT8_ACT
    calibration: Calibration = Calibration.MINMAX
    percentile: float = 99.99
    exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calibration", Calibration(self.calibration))
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.activations is not None and self.activations.per_channel:
            raise ValueError("activations are quantized per tensor")

    @property
    def name(self) -> str:
        """Short label used in reports, e.g. ``w8a8`` or ``w8a8-per-tensor``."""
        label = f"w{self.weights.bits}a{self.activations.bits if self.activations else 'f'}"
        if not self.weights.per_channel:
            label += "-per-tensor"
        if self.calibration is not Calibration.MINMAX:
            label += f"-{self.calibration.value}"
        return label

    def with_(self, **changes) -> "QuantScheme":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        def tq(t: TensorQuant | None) -> dict | None:
            if t is None:
                return None
            return {
                "bits": t.bits, "symmetric": t.symmetric, "per_channel": t.per_channel,
                "signed": t.signed, "narrow_range": t.narrow_range,
            }

        return {
            "name": self.name, "weights": tq(self.weights), "activations": tq(self.activations),
            "calibration": self.calibration.value, "percentile": self.percentile,
            "exclude": list(self.exclude),
        }


W8A8 = QuantScheme()
W8A8_PER_TENSOR = QuantScheme(weights=INT8_WEIGHT_PER_TENSOR)
PRESETS: dict[str, QuantScheme] = {"w8a8": W8A8, "w8a8-per-tensor": W8A8_PER_TENSOR}
