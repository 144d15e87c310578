"""Candidate configurations made real: a per-layer precision choice becomes a QuantizedModel
(from one calibration, never repeated), a QDQ file, and measured accuracy and latency on the
target. Every measurement is cached by configuration, so the strategies share them.

A candidate is derived from the calibrated base model (every layer at the base precision): the
scheme's overrides insert or leave out quantizers (``--override`` semantics: a float layer has
no weight or output quantizer), and every quantizer the candidate shares with the base keeps
the base's calibrated numbers. A 4-bit layer's weight scales come from its weights (round to
nearest); no PTQ method runs per candidate. A layer at 16-bit activations (``8a16``, the HTP's
choice) gets new 16-bit grids on its input and output, calibrated for that candidate.

On a target whose timings mean nothing here (the emulated HTP) a candidate's cost is an
estimate, named as such everywhere it is shown: the share of the model's MACs that run with
16-bit activations (a 16-bit layer moves twice the activation bytes; how much slower it runs is
not measured here).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable

import numpy as np

from .search import Config

FLOAT, W8, W4, A16 = "float", "8", "4", "8a16"


@dataclass
class Measured:
    correct: np.ndarray  # per tuning-split image: top-1 right
    latency_ms: float | None
    artifact: Path
    seconds: float

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


@dataclass
class CandidateRunner:
    """Builds, exports and measures candidates of one model on one target."""

    gm: object  # the captured float graph
    base: object  # calibrated QuantizedModel, every layer at the base precision
    example: object  # torch.Tensor, the export's example input
    tune_x: np.ndarray
    tune_y: np.ndarray
    target: object
    threads: int
    batch: int
    workdir: Path
    calib: list = field(default_factory=list)  # batches, for a quantizer the base lacks
    repeats: int = 30
    min_time_s: float = 0.5
    cache: dict[Config, Measured] = field(default_factory=dict)
    layer_macs: dict[str, int] = field(default_factory=dict)  # filled on first estimate
    scored: dict[Path, np.ndarray] = field(default_factory=dict)  # evaluation-split top-1
    workers: int = 1  # processes that score images where nothing is timed (``top1``)
    _pool: object = None

    def model(self, cfg: Config):
        from convdeploy.quant.fakequant import ActivationQuantizer, WeightQuantizer
        from convdeploy.quant.ptq import calibrate, prepare
        from convdeploy.quant.scheme import LayerOverride

        scheme = self.base.scheme.with_(overrides=self.base.scheme.overrides + tuple(
            LayerOverride.parse(f"{layer}={p}") for layer, p in cfg))  # the user's stay
        qm = prepare(self.gm, scheme)
        base = self.base.quantizers
        missing = False
        for key, q in qm.quantizers.items():
            b = base.get(key)
            if isinstance(q, ActivationQuantizer):
                if isinstance(b, ActivationQuantizer) and b.tq == q.tq and b.calibrated:
                    q.scale.copy_(b.scale)
                    q.zero_point.copy_(b.zero_point)
                    q.calibrated = True
                elif not q.calibrated:
                    missing = True
            elif isinstance(q, WeightQuantizer) and isinstance(b, WeightQuantizer) \
                    and b.tq == q.tq and b.initialised:
                q.scale = b.scale.clone()
                q.initialised = True
        if missing:  # a tensor no base quantizer covered: calibrate this candidate
            calibrate(qm, self.calib, progress=False)
        qm.refresh_encodings()
        return qm

    def measure(self, cfg: Config) -> Measured:
        # a layer at 8 bits is the base scheme's: x=8 listed or not is one model, measured once
        cfg = tuple((layer, p) for layer, p in cfg if p != W8)
        if cfg in self.cache:
            return self.cache[cfg]
        from convdeploy.exporters.onnx_export import OnnxExporter

        t0 = time.perf_counter()
        qm = self.model(cfg)
        directory = self.workdir / f"c{len(self.cache):04d}"
        art = OnnxExporter(quantized=True, example=self.example).export(qm, directory)
        correct, latency = self.run(art)
        m = Measured(correct, latency, art.path, time.perf_counter() - t0)
        self.cache[cfg] = m
        return m

    def run(self, art) -> tuple[np.ndarray, float | None]:
        """Per tuning-split image whether top-1 is right, and the median latency at the run's
        batch."""
        from convdeploy.latency import time_runs

        if not self.measures_latency:  # nothing is timed: the images may go to every core
            return self.top1(art.path, self.tune_x) == self.tune_y, None
        runnable = self.compiled(art.path)
        correct = _top1(runnable, self.tune_x) == self.tune_y
        timing = time_runs(runnable, {"input": self.batch_input()}, warmup=5,
                           repeats=self.repeats, min_time_s=self.min_time_s)
        return correct, timing["median"]

    def top1(self, path: Path, x: np.ndarray) -> np.ndarray:
        """The file's top-1 class of each image of ``x`` on the target. Where the target's
        timings mean nothing (the emulated HTP, which runs each session on one core) the
        images are split over one process per core; elsewhere one session in this process,
        so that nothing runs beside a timing."""
        if self.measures_latency or self.workers < 2 or len(x) < 2 * 100:
            return _top1(self.compiled(path), x)
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        parts = np.array_split(x, self.workers)
        return np.concatenate(list(self._pool.map(
            _top1_on, [self.target.name] * len(parts), [path] * len(parts),
            [self.threads] * len(parts), parts)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def compiled(self, path: Path, label: str = "tune"):
        """A candidate's (or the float model's) QDQ file compiled on the target."""
        return _compile_file(self.target, path, self.threads, path.parent, label)

    def session(self, path: Path, label: str = "tune") -> Callable[[], object]:
        """Makes a fresh compiled session of ``path`` on each call (``alternating_windows``)."""
        return lambda: self.compiled(path, label)

    def remeasure(self, cfgs: list[Config], rounds: int) -> dict[Config, list[float]]:
        """Latency windows of each configuration, side by side (``search.Confirm``)."""
        return alternating_windows({c: self.session(self.measure(c).artifact) for c in cfgs},
                                   self.batch_input(), rounds=rounds, repeats=self.repeats,
                                   min_time_s=self.min_time_s)

    def batch_input(self, x: np.ndarray | None = None) -> np.ndarray:
        """One input of the run's batch size (images from ``x``, else the tuning split)."""
        x = self.tune_x if x is None else x
        return np.ascontiguousarray(np.resize(x, (self.batch, *x.shape[1:])))

    def accuracy(self, cfg: Config) -> float:
        return self.measure(cfg).accuracy

    def latency(self, cfg: Config) -> float | None:
        return self.measure(cfg).latency_ms

    @property
    def measures_latency(self) -> bool:
        return not getattr(self.target, "latency_not_meaningful", None)

    def estimated_cost(self, cfg: Config) -> float:
        """Share of the model's MACs (from the base model's exported graph) in layers that run
        with 16-bit activations in ``cfg``: the estimate used where latency is not measured."""
        if not self.layer_macs:
            from convdeploy.efficiency.costs import layer_costs

            for c in layer_costs(self.measure(()).artifact):
                if c.weighted:
                    self.layer_macs[c.layer] = self.layer_macs.get(c.layer, 0) + c.macs
        total = sum(self.layer_macs.values()) or 1
        return sum(self.layer_macs.get(layer, 0) for layer, p in cfg if p == A16) / total

    def cost(self, cfg: Config) -> float | None:
        """What the searches minimise: measured latency (ms), else the estimate above."""
        return self.latency(cfg) if self.measures_latency else self.estimated_cost(cfg)


def _top1(runnable, x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(runnable({"input": x[i:i + 100]})["output"]).argmax(1)
                           for i in range(0, len(x), 100)])


def _top1_on(target_name: str, path: Path, threads: int, x: np.ndarray) -> np.ndarray:
    """``_top1`` in a worker process: the file compiled on the target in a folder of its own
    (a target may write a copy of the model beside it)."""
    import tempfile

    from convdeploy.targets import registry

    with tempfile.TemporaryDirectory(prefix="convdeploy-top1-") as tmp:
        return _top1(_compile_file(registry.get(target_name), Path(path), threads, Path(tmp)),
                     x)


def _compile_file(target, path: Path, threads: int, folder: Path, label: str = "tune"):
    """The QDQ file at ``path`` compiled on ``target`` (what it writes goes to ``folder``)."""
    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.targets.base import RuntimeOptions

    art = Artifact(path.stem, ArtifactFormat.ONNX, label, path=path)
    return target.compile(art, folder, options=RuntimeOptions(threads))


def alternating_windows(sessions: dict[Hashable, Callable[[], object]], x: np.ndarray, *,
                        rounds: int, repeats: int, min_time_s: float,
                        input_name: str = "input") -> dict[Hashable, list[float]]:
    """Median latency of each configuration in ``rounds`` timing windows taken in turn (A, B,
    C, A, B, C, ...), so a drift in the machine's speed falls on every one alike; compare the
    medians of the windows, never one window against another taken minutes apart.

    ``sessions`` makes a fresh runnable for each window (and the previous one is dropped
    first): one session's speed stays put from window to window, but two sessions of the same
    file can differ by 10%. Seen in the 2026 MobileNetV2 benchmark on cpu-ort: the same all-4
    file measured 0.382, 0.390 and 0.423 ms in three sessions, while the last one's five
    windows spanned only 0.418-0.439 ms. Windows of one session would compare sessions, not
    configurations."""
    from convdeploy.latency import time_runs

    windows: dict[Hashable, list[float]] = {label: [] for label in sessions}
    for _ in range(rounds):
        for label, make in sessions.items():
            runnable = make()
            windows[label].append(time_runs(runnable, {input_name: x}, warmup=3,
                                            repeats=repeats, min_time_s=min_time_s)["median"])
            del runnable
    return windows
