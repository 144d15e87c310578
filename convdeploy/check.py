"""Check a deployed model against its references: accuracy (with a 95% interval), top-1
agreement with float, SQNR of the logits, and the distance to the simulation in output LSBs."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convdeploy.models.datasets import ImageSet
from convdeploy.models.spec import Preprocess

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Accuracy:
    value: float
    ci95_low: float
    ci95_high: float
    n: int


def wilson_interval(correct: int, n: int) -> Accuracy:
    """Accuracy with its Wilson score 95% interval (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        raise ValueError("no samples")
    p = correct / n
    denom = 1 + Z95**2 / n
    center = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return Accuracy(p, max(0.0, center - half), min(1.0, center + half), n)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float | None:
    """10 log10(signal / noise) of ``test`` against ``reference``; None when they are identical."""
    ref = reference.astype(np.float64)
    noise = float(((ref - test.astype(np.float64)) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return None
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def lsb_distance(reference: np.ndarray, test: np.ndarray, scale: float) -> dict:
    """Distance in output LSBs (units of the output encoding's scale)."""
    lsb = np.abs(test.astype(np.float64) - reference.astype(np.float64)) / scale
    steps = np.rint(lsb)
    return {"max": float(lsb.max()), "mean": float(lsb.mean()),
            "exact_fraction": float((steps == 0).mean()),
            "within_1_lsb_fraction": float((steps <= 1).mean())}


def run_dataset(runnable, data: ImageSet, preprocess: Preprocess, *, batch_size: int,
                input_name: str, output_name: str, label: str = "",
                progress: bool = True) -> np.ndarray:
    """Logits of every sample of ``data`` (float32, (N, classes))."""
    from tqdm.auto import tqdm

    outs = []
    batches = range(0, len(data), batch_size)
    for start in tqdm(batches, desc=label or "evaluate", unit="batch", disable=not progress,
                      leave=False):
        x = data.normalized(preprocess, start, start + batch_size)
        outs.append(np.asarray(runnable({input_name: x})[output_name], dtype=np.float32))
    return np.concatenate(outs)


def compare(logits: np.ndarray, *, float_logits: np.ndarray, sim_logits: np.ndarray | None,
            labels: np.ndarray | None, output_scale: float | None) -> dict:
    """All accuracy and error figures of one (artifact, target) row."""
    pred = logits.argmax(1)
    row: dict = {
        "accuracy": None, "accuracy_ci95": None,
        "top1_agreement": float((pred == float_logits.argmax(1)).mean()),
        "sqnr_db": sqnr_db(float_logits, logits),
    }
    if labels is not None:
        acc = wilson_interval(int((pred == labels).sum()), len(labels))
        row["accuracy"] = acc.value
        row["accuracy_ci95"] = [acc.ci95_low, acc.ci95_high]
    if sim_logits is not None and output_scale:
        row["lsb_vs_simulation"] = lsb_distance(sim_logits, logits, output_scale)
        row["max_lsb_vs_simulation"] = row["lsb_vs_simulation"]["max"]
        row["top1_agreement_vs_simulation"] = float((pred == sim_logits.argmax(1)).mean())
    return row
