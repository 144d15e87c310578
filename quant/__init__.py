"""Quantization: schemes, calibration, PTQ, and the ``Encodings`` numerics contract.

Heavy imports (torch) happen only when a torch-side name is first used.
"""
from __future__ import annotations

from .encodings import Encodings, TensorEncoding, TensorKind
from .scheme import PRESETS, W8A8, W8A8_PER_TENSOR, Calibration, QuantScheme, TensorQuant

_LAZY = {
    "QuantizedModel": ".ptq", "quantize": ".ptq", "prepare": ".ptq", "calibrate": ".ptq",
    "capture": ".graph", "fold_batchnorm": ".fold", "Mode": ".fakequant",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Encodings", "TensorEncoding", "TensorKind", "PRESETS", "W8A8", "W8A8_PER_TENSOR",
           "Calibration", "QuantScheme", "TensorQuant", *_LAZY]
