"""Run configuration: frozen, typed dataclasses. The CLI parses flags into these at the edge;
every flag maps to one field here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from convdeploy.exporters.hls_config import FpgaConfig
from convdeploy.quant.config import DEFAULT_PTQ, DEFAULT_PTQ_BEFORE_QAT, PTQConfig, QATConfig
from convdeploy.quant.scheme import QuantScheme

DEFAULT_TARGETS = ("cpu-ort", "cpu-openvino")


@dataclass(frozen=True)
class ModelSource:
    """A zoo name, ``package.module:factory``, or a ``.pt2`` path; plus an optional checkpoint.
    ``conv3d_as_2d``: export every Conv3d in the (2+1)D form the integer targets run
    (``quant/conv3d_form.py``), for the runtimes that would otherwise take the 5-D graph."""

    ref: str = "digits-convnet"
    weights: str | None = None
    conv3d_as_2d: bool = False

    @property
    def label(self) -> str:
        return f"{self.ref} (2-D form)" if self.conv3d_as_2d else self.ref


@dataclass(frozen=True)
class DataConfig:
    """Calibration and evaluation sets (ImageFolder dirs or .npz) and preprocessing overrides.

    ``size``/``mean``/``std``/``resize`` override the model's own preprocessing (zoo models carry
    theirs; other models default to RGB scaled to [0, 1] at the data's native size).
    """

    calib: str | None = None
    eval: str | None = None
    train: str | None = None  # quantization-aware fine-tuning data
    calib_size: int = 512
    eval_limit: int | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    seed: int = 0
    skip_bad_files: bool = False  # leave undecodable images out (counted in the report)
    # video models: frames per clip and decoded frames between them (a zoo model states its
    # own; a user's model takes them from a 5-D .npz, or from these)
    frames: int | None = None
    frame_stride: int | None = None

    def __post_init__(self) -> None:
        if (self.frames is not None and self.frames < 1) or (
                self.frame_stride is not None and self.frame_stride < 1):
            raise ValueError("frames and frame_stride must be at least 1")
        if self.calib_size < 1:
            raise ValueError("calib_size must be at least 1")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError("eval_limit must be at least 1")


@dataclass(frozen=True)
class MeasureConfig:
    """How accuracy and latency are measured: latency is warm-up runs, then the median and p90
    of at least ``repeats`` timed runs over at least ``min_time_s`` seconds, at batch 1 and at
    ``batch_size``."""

    batch_size: int = 32
    eval_batch_size: int = 100
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    warmup: int = 10
    repeats: int = 50
    min_time_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "threads", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.min_time_s >= 0:
            raise ValueError("min_time_s must be 0 or more")


@dataclass(frozen=True)
class DeployConfig:
    """One ``pipeline.run``: model -> (quantize) -> export -> run on targets -> report in ``out``.

    ``scheme=None`` exports and checks the float model only. ``ptq=None`` uses the best PTQ
    methods measured for the scheme (``DEFAULT_PTQ``); ``qat`` fine-tunes after PTQ on
    ``data.train``, checkpointing to ``qat_checkpoint`` (resumed when it matches the run).
    """

    model: ModelSource = field(default_factory=ModelSource)
    data: DataConfig = field(default_factory=DataConfig)
    scheme: QuantScheme | None = None
    ptq: PTQConfig | None = None
    qat: QATConfig | None = None
    qat_checkpoint: Path | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    fpga: FpgaConfig = field(default_factory=FpgaConfig)  # fpga-hls: part, clock, folding
    out: Path = Path("convdeploy-out")
    overwrite: bool = False
    progress: bool = True


def effective_ptq(cfg: DeployConfig) -> PTQConfig:
    """The PTQ methods a run uses: the configured ones, or the measured default (the scheme's,
    or ``DEFAULT_PTQ_BEFORE_QAT`` when the run fine-tunes)."""
    if cfg.ptq is not None:
        return cfg.ptq
    if cfg.qat is not None:
        return PTQConfig(methods=DEFAULT_PTQ_BEFORE_QAT)
    return PTQConfig(methods=default_methods(cfg.scheme))


def default_methods(scheme: QuantScheme | None) -> tuple:
    """The PTQ methods measured best for ``scheme`` (bench/ptq_qat.py)."""
    name = scheme.name if scheme else "w8a8"  # e.g. w4a8-mixed-mse: its base scheme's methods
    return DEFAULT_PTQ.get(name, DEFAULT_PTQ.get(name.split("-")[0], ()))
