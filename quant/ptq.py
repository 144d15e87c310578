"""Post-training quantization: capture, fold, insert quantizers, calibrate -> ``QuantizedModel``."""
from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule

from convdeploy.errors import ConvdeployError

from .encodings import Encodings
from .fakequant import ActivationQuantizer, Mode, Quantizer, WeightQuantizer
from .fixed_point import MIN_REQUANT_MULTIPLIER
from .fold import fold_batchnorm, fold_scales
from .insert import insert_quantizers, quantizers_of
from .config import PTQConfig, PTQMethod
from .scheme import Calibration, QuantScheme


@dataclass
class QuantizedModel:
    """A BN-folded aten graph with its quantizers, and the encodings they define.

    ``mode`` switches the one graph between float reference (``OFF``), simulation (``QUANT``) and
    export marker (``MARKER``) behaviour.
    """

    graph: GraphModule
    scheme: QuantScheme
    encodings: Encodings
    folded_batchnorms: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    ptq: PTQConfig = field(default_factory=PTQConfig)
    ptq_details: dict = field(default_factory=dict)
    fine_tuned: bool = False  # quantization-aware fine-tuning ran

    @property
    def label(self) -> str:
        """Scheme and the methods that produced this model, e.g. ``w4a8+adaround+qat``."""
        parts = [self.scheme.name, *(m.value for m in self.ptq.methods)]
        return "+".join(parts + (["qat"] if self.fine_tuned else []))

    @property
    def quantizers(self) -> dict[str, Quantizer]:
        return quantizers_of(self.graph)

    def set_mode(self, mode: Mode) -> "QuantizedModel":
        for q in self.quantizers.values():
            q.mode = Mode(mode)
        return self

    @contextlib.contextmanager
    def using(self, mode: Mode) -> Iterator["QuantizedModel"]:
        """Switch every quantizer to ``mode`` for a block, then restore each one's own mode."""
        previous = {k: q.mode for k, q in self.quantizers.items()}
        self.set_mode(mode)
        try:
            yield self
        finally:
            for k, q in self.quantizers.items():
                q.mode = previous[k]

    @torch.no_grad()
    def run(self, x: torch.Tensor, mode: Mode = Mode.QUANT) -> torch.Tensor:
        with self.using(mode):
            return self.graph(x)

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant output: what every integer target should reproduce within LSBs."""
        return self.run(x, Mode.QUANT)

    def float(self, x: torch.Tensor) -> torch.Tensor:
        """The float (BN-folded) reference output of the same graph."""
        return self.run(x, Mode.OFF)

    def output_scale(self) -> float | None:
        key = self.encodings.output
        return self.encodings[key].scale[0] if key else None

    def floor_weight_scales(self) -> dict[str, int]:
        """The contract's requantization-multiplier floor (``fixed_point.MIN_REQUANT_MULTIPLIER``)
        applied to every weight quantizer; returns {weight key: channels raised}."""
        raised = {k: q.floor_scale() for k, q in self.quantizers.items()
                  if isinstance(q, WeightQuantizer)}
        return {k: n for k, n in raised.items() if n}

    def refresh_encodings(self) -> Encodings:
        """Fix the Encodings from the quantizers' current numbers, the multiplier floor first
        (so no path - calibration, PTQ, QAT - can write an encoding below it)."""
        raised = self.floor_weight_scales()
        if raised:
            self.ptq_details["requant-floor"] = {
                "min_multiplier": MIN_REQUANT_MULTIPLIER, "channels": sum(raised.values()),
                "weights": raised}
        self.encodings = Encodings(
            tensors={k: q.encoding() for k, q in self.quantizers.items()},
            scheme=self.scheme.to_dict(), output=self.encodings.output)
        return self.encodings


def prepare(gm: GraphModule, scheme: QuantScheme) -> QuantizedModel:
    """Fold BatchNorm and insert (uncalibrated) quantizers into a copy of ``gm``."""
    gm = copy.deepcopy(gm)
    folded = fold_batchnorm(gm)
    fold_scales(gm)  # layer scales, into the layer before them
    result = insert_quantizers(gm, scheme)
    enc = Encodings(scheme=scheme.to_dict(), output=result.output_key)
    return QuantizedModel(graph=gm, scheme=scheme, encodings=enc, folded_batchnorms=folded)


def _run_pass(qm: QuantizedModel, batches: list[torch.Tensor], label: str, progress: bool) -> None:
    from tqdm.auto import tqdm

    for x in tqdm(batches, desc=label, unit="batch", disable=not progress, leave=False):
        qm.graph(x)


@torch.no_grad()
def calibrate(qm: QuantizedModel, batches: Iterable[torch.Tensor], *,
              progress: bool = True) -> Encodings:
    """Observe activation ranges over ``batches`` (float forward), then fix every encoding."""
    batches = list(batches)
    if not batches or sum(int(b.shape[0]) for b in batches) == 0:
        raise ConvdeployError("the calibration set is empty",
                              fix="give --calib a folder or .npz with at least one image")
    for b in batches:
        if not bool(torch.isfinite(b).all()):
            raise ConvdeployError("the calibration data holds NaN/inf values",
                                  fix="check the .npz array or the --mean/--std values")
    activations = [q for q in qm.quantizers.values() if isinstance(q, ActivationQuantizer)]
    qm.set_mode(Mode.OFF)
    for q in activations:
        q.mode = Mode.OBSERVE
    _run_pass(qm, batches, "calibrate (ranges)", progress)
    method = qm.scheme.calibration
    if method is not Calibration.MINMAX:
        for q in activations:
            q.observer.collect_histogram = True
        _run_pass(qm, batches, f"calibrate ({method.value})", progress)
    for q in activations:
        if not q.observer.seen:
            raise ConvdeployError(f"activation {q.key!r} produced no finite values in calibration",
                                  fix="check the calibration data and the model's weights")
        q.set_range(*q.observer.select_range(method, q.tq, qm.scheme.percentile))
    qm.set_mode(Mode.QUANT)
    return qm.refresh_encodings()


def apply_ptq(qm: QuantizedModel, batches: Iterable[torch.Tensor], ptq: PTQConfig = PTQConfig(),
              *, progress: bool = True) -> Encodings:
    """Calibrate ``qm`` with the PTQ methods of ``ptq``, in their fixed order: CLE (changes
    weights, so before calibration) -> MSE weight clipping -> activation calibration ->
    AdaRound -> bias correction. Details and timings land in ``qm.ptq_details``/``timings_s``."""
    from . import adaround, bias_correction, cle, weight_clipping

    batches = list(batches)
    methods = ptq.methods
    timed = _Timer(qm.timings_s)
    if PTQMethod.CLE in methods:
        with timed("cle"):
            res = cle.equalize(qm, ptq.cle_iterations)
        qm.ptq_details["cle"] = vars(res)
    if PTQMethod.WEIGHT_MSE in methods:
        with timed("weight-mse"):
            qm.ptq_details["weight-mse"] = {"layers": weight_clipping.clip_weights(qm)}
    with timed("calibrate"):
        calibrate(qm, batches, progress=progress)
    reference = copy.deepcopy(qm) if {PTQMethod.ADAROUND, PTQMethod.BIAS_CORRECTION} & set(
        methods) else None
    if PTQMethod.ADAROUND in methods:
        with timed("adaround"):
            res = adaround.adaround(qm, batches, reference, iters=ptq.adaround_iters,
                                    batch=ptq.adaround_batch, lam=ptq.adaround_lambda,
                                    lr=ptq.adaround_lr, seed=ptq.seed, progress=progress)
        qm.ptq_details["adaround"] = adaround.summary(res)
    if PTQMethod.BIAS_CORRECTION in methods:
        with timed("bias-correction"):
            shifts = bias_correction.correct_biases(qm, batches, reference, progress=progress)
        qm.ptq_details["bias-correction"] = {"layers": len(shifts), "mean_abs_shift": shifts}
    qm.ptq = ptq
    qm.set_mode(Mode.QUANT)
    return qm.refresh_encodings()


class _Timer:
    def __init__(self, sink: dict[str, float]) -> None:
        self.sink = sink

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.sink[label] = time.perf_counter() - t0


def quantize(gm: GraphModule, scheme: QuantScheme, calib_batches: Iterable[torch.Tensor],
             ptq: PTQConfig = PTQConfig(), *, progress: bool = True) -> QuantizedModel:
    """Post-training quantization of a captured graph (see ``quant.graph.capture``)."""
    t0 = time.perf_counter()
    qm = prepare(gm, scheme)
    qm.timings_s["prepare"] = time.perf_counter() - t0
    apply_ptq(qm, calib_batches, ptq, progress=progress)
    return qm
