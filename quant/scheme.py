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
INT4_WEIGHT_PER_CHANNEL = TensorQuant(bits=4, symmetric=True, per_channel=True)
UINT4_ACT = TensorQuant(bits=4, symmetric=False, per_channel=False, signed=False,
                        narrow_range=False)
UINT16_ACT = TensorQuant(bits=16, symmetric=False, per_channel=False, signed=False,
                         narrow_range=False)


@dataclass(frozen=True)
class LayerOverride:
    """Mixed precision: the layers at ``layer`` (a module path, or a prefix of one) quantize their
    weights with ``weights`` instead of the scheme's (``weights=None`` keeps them in float) and,
    where ``activation_bits`` is set, their output with that many bits (the scheme's activation
    grid otherwise: same signedness and calibration, other width; e.g. 16-bit outputs for the
    layers the HTP must run at A16W8)."""

    layer: str
    weights: TensorQuant | None
    activation_bits: int | None = None

    def __post_init__(self) -> None:
        if self.activation_bits is not None and self.weights is None:
            raise ValueError(f"override {self.layer}: a float layer has no activation bits")
        if self.activation_bits not in (None, 4, 8, 16):
            raise ValueError(f"override {self.layer}: activation bits must be 4, 8 or 16")

    @classmethod
    def parse(cls, text: str) -> "LayerOverride":
        """``layer=8`` / ``layer=4`` (per-channel weight bits), ``layer=float``, or weight bits
        with output activation bits: ``layer=8a16``, ``layer=8a8``."""
        layer, sep, value = text.partition("=")
        weights, a, act = ("float", "", "") if value == "float" else value.partition("a")
        if not sep or not layer or weights not in ("4", "8", "float") \
                or (a and act not in ("4", "8", "16")):
            raise ValueError(f"override {text!r} is not LAYER=4, LAYER=8, LAYER=float or "
                             "LAYER=8a16 (weight bits, then output activation bits)")
        if value == "float":
            return cls(layer, None)
        return cls(layer, TensorQuant(bits=int(weights), symmetric=True, per_channel=True),
                   int(act) if a else None)

    @property
    def value(self) -> str:
        """What ``parse`` reads after ``LAYER=``: ``float``, ``8``, ``8a16``..."""
        if self.weights is None:
            return "float"
        act = f"a{self.activation_bits}" if self.activation_bits else ""
        return f"{self.weights.bits}{act}"


@dataclass(frozen=True)
class QuantScheme:
    """A whole-model quantization recipe.

    ``exclude`` names layers (module paths such as ``layer3.2.conv2`` or ``linear``) kept in float;
    ``overrides`` give chosen layers other weight bits, or output activation bits (mixed
    precision).
    ``activations=None`` means weight-only quantization.
    """

    weights: TensorQuant = INT8_WEIGHT_PER_CHANNEL
    activations: TensorQuant | None = UINT8_ACT
    calibration: Calibration = Calibration.MINMAX
    percentile: float = 99.99
    exclude: tuple[str, ...] = field(default_factory=tuple)
    overrides: tuple[LayerOverride, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calibration", Calibration(self.calibration))
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.activations is not None and self.activations.per_channel:
            raise ValueError("activations are quantized per tensor")

    @property
    def name(self) -> str:
        """Short label used in reports, e.g. ``w8a8``, ``w8a8-per-tensor``, ``w4a8-mixed``."""
        label = f"w{self.weights.bits}a{self.activations.bits if self.activations else 'f'}"
        if not self.weights.per_channel:
            label += "-per-tensor"
        if self.overrides:
            label += "-mixed"
        if self.calibration is not Calibration.MINMAX:
            label += f"-{self.calibration.value}"
        return label

    def weights_for(self, layer: str) -> TensorQuant | None:
        """The weight quantization of ``layer`` (None = float): the last matching override wins."""
        chosen: TensorQuant | None = self.weights
        for o in self.overrides:
            if layer == o.layer or layer.startswith(o.layer + "."):
                chosen = o.weights
        return chosen

    def activations_for(self, layer: str) -> TensorQuant | None:
        """The output activation quantization of ``layer``: the scheme's, at the width of the
        last matching override that names one."""
        chosen = self.activations
        for o in self.overrides:
            if (layer == o.layer or layer.startswith(o.layer + ".")) and chosen is not None:
                if o.activation_bits is not None:
                    chosen = replace(self.activations, bits=o.activation_bits)
        return chosen

    @property
    def activation_widths(self) -> set[int]:
        """Every activation width the scheme uses (the scheme's and its overrides')."""
        if self.activations is None:
            return set()
        return {self.activations.bits} | {o.activation_bits for o in self.overrides
                                          if o.activation_bits and o.weights is not None}

    @property
    def min_bits(self) -> int:
        """The narrowest width any tensor of the scheme uses (what a target must support)."""
        bits = [self.weights.bits] + [o.weights.bits for o in self.overrides if o.weights]
        return min(bits + sorted(self.activation_widths))

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
            "overrides": {o.layer: (o.value if o.weights is None or o.activation_bits
                                    else o.weights.bits) for o in self.overrides},
        }


W8A8 = QuantScheme()
W8A8_PER_TENSOR = QuantScheme(weights=INT8_WEIGHT_PER_TENSOR)
W4A8 = QuantScheme(weights=INT4_WEIGHT_PER_CHANNEL)
W4A4 = QuantScheme(weights=INT4_WEIGHT_PER_CHANNEL, activations=UINT4_ACT)
W8A16 = QuantScheme(activations=UINT16_ACT)
PRESETS: dict[str, QuantScheme] = {"w8a8": W8A8, "w8a8-per-tensor": W8A8_PER_TENSOR,
                                   "w4a8": W4A8, "w4a4": W4A4, "w8a16": W8A16}
