"""convdeploy: trained ConvNet -> quantized, exported, run on real targets, checked against float.

``import convdeploy`` stays light: torch and the runtimes load only when a stage needs them.

    import convdeploy as cd
    report = cd.run(cd.DeployConfig(model=cd.ModelSource("resnet20-cifar10", weights="r20.th"),
                                    data=cd.DataConfig(calib="train/", eval="test/"),
                                    scheme=cd.W8A8, targets=("cpu-ort",), out="out"))
"""
from __future__ import annotations

from .config import DataConfig, DeployConfig, MeasureConfig, ModelSource
from .errors import ConvdeployError
from convdeploy.quant.scheme import W8A8, W8A8_PER_TENSOR, Calibration, QuantScheme, TensorQuant

__version__ = "0.1.0"


def run(cfg: DeployConfig):
    """Run the whole pipeline (see ``convdeploy.pipeline.run``) and return the ``Report``."""
    from .pipeline import run as _run

    return _run(cfg)


__all__ = ["DataConfig", "DeployConfig", "MeasureConfig", "ModelSource", "ConvdeployError",
           "QuantScheme", "TensorQuant", "Calibration", "W8A8", "W8A8_PER_TENSOR", "run"]
