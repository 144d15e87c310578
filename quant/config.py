"""Algorithm settings: which post-training methods run, and how fine-tuning trains (frozen
dataclasses, no torch import: the CLI and ``convdeploy.config`` parse into these at the edge)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PTQMethod(str, Enum):
    """Post-training algorithms beyond round-to-nearest; combinable, applied in this order."""

    CLE = "cle"                          # cross-layer equalization (Nagel et al. 2019)
    WEIGHT_MSE = "weight-mse"            # per-channel MSE-optimal weight clipping
    ADAROUND = "adaround"                # learned rounding (Nagel et al. 2020)
    BIAS_CORRECTION = "bias-correction"  # empirical bias correction (Nagel et al. 2019)


@dataclass(frozen=True)
class PTQConfig:
    """Which post-training methods run, and their settings.

    AdaRound follows Nagel et al. 2020: rectified sigmoid (zeta 1.1, gamma -0.1), regulariser
    ``lam * sum(1 - |2h - 1|^beta)`` with beta annealed from 20 to 2 after a 20% warm-up, Adam,
    asymmetric reconstruction (quantized input, float target) through the layer's ReLU.
    """

    methods: tuple[PTQMethod, ...] = ()
    adaround_iters: int = 1000
    adaround_batch: int = 32
    adaround_lambda: float = 0.01
    adaround_lr: float = 1e-3
    cle_iterations: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        methods = tuple(PTQMethod(m) for m in self.methods)
        order = list(PTQMethod)
        object.__setattr__(self, "methods", tuple(sorted(set(methods), key=order.index)))
        if self.adaround_iters < 1 or self.adaround_batch < 1:
            raise ValueError("adaround_iters and adaround_batch must be at least 1")

    @classmethod
    def parse(cls, text: str, **settings) -> "PTQConfig":
        names = [t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"]
        known = [m.value for m in PTQMethod]
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(f"unknown PTQ method(s) {', '.join(bad)}; known: {', '.join(known)}")
        return cls(methods=tuple(PTQMethod(n) for n in names), **settings)

    @property
    def label(self) -> str:
        return "+".join(m.value for m in self.methods) or "rtn"


# The best combination measured for each scheme (bench/ptq_qat.py).
DEFAULT_PTQ: dict[str, tuple[PTQMethod, ...]] = {
    "w8a8": (), "w8a8-per-tensor": (),
    "w4a8": (PTQMethod.ADAROUND,), "w4a4": (PTQMethod.ADAROUND,), "w8a16": (),
}

# Before QAT: none. AdaRound writes its rounding back as grid weights, so QAT's latent weights
# would start without their sub-LSB float detail; measured on ResNet-20 W4A8 (12 epochs), QAT from
# round-to-nearest reaches 86.70%, from AdaRound 86.28% (float fine-tuned alike: 87.14%).
DEFAULT_PTQ_BEFORE_QAT: tuple[PTQMethod, ...] = ()


@dataclass(frozen=True)
class QATConfig:
    """Fine-tuning settings: SGD with Nesterov momentum and a cosine schedule from ``lr`` to 0;
    scales (with ``learn_ranges``) use ``lr * range_lr_factor``.

    12 epochs, measured on ResNet-20 W4A8 (bench/ptq_qat.py): the float model fine-tuned by the
    same recipe reaches 86.56% after 3 epochs and 87.14% after 12; QAT from AdaRound 85.63%,
    86.23% after 8 and 86.28% after 12; QAT from round-to-nearest 86.70% after 12. ``lr`` 5e-3
    diverged: the BN-folded graph trains without BatchNorm."""

    epochs: int = 12
    lr: float = 1e-3
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    learn_ranges: bool = True
    range_lr_factor: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise ValueError("lr must be positive")
