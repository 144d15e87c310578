"""``convdeploy inspect``: which layers lose the most when quantized, to choose mixed-precision
overrides (``--override LAYER=8``) before a 4-bit deployment."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .config import DeployConfig, effective_ptq


@dataclass
class SensitivityReport:
    model: str
    scheme: str
    samples: int
    rows: list[dict] = field(default_factory=list)
    top: int = 5

    def worst(self) -> list[dict]:
        return sorted(self.rows, key=lambda r: r["sqnr_db"])[:self.top]

    def table(self) -> str:
        lines = [f"{self.model}, {self.scheme}: one layer quantized at a time "
                 f"({self.samples} evaluation images)",
                 f"{'layer':<28} {'bits':>4} {'params':>8} {'ch. spread':>10} {'SQNR dB':>8} "
                 f"{'acc. delta':>10}"]
        for r in self.rows:
            delta = r.get("accuracy_delta")
            lines.append(f"{r['layer']:<28} {r['weight_bits']:>4} {r['parameters']:>8} "
                         f"{r['channel_range_spread']:>10.1f} {r['sqnr_db']:>8.1f} {'' if delta is None else f'{delta:+.4f}':>10}")
        worst = self.worst()
        lines.append("\nmost sensitive: " + ", ".join(r["layer"] for r in worst))
        lines.append("keep them at 8 bits with: " + " ".join(f"--override {r['layer']}=8"
                                                             for r in worst[:3]))
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "scheme": self.scheme, "samples": self.samples,
                           "layers": self.rows, "worst": [r["layer"] for r in self.worst()]},
                          indent=2) + "\n"


DEFAULT_SAMPLES = 1000


def inspect_layers(cfg: DeployConfig, *, top: int = 5) -> SensitivityReport:
    """Calibrate ``cfg.scheme`` (with its PTQ methods), then score every layer alone."""
    import torch

    from convdeploy.models.loading import load_model
    from convdeploy.quant.ptq import apply_ptq, prepare
    from convdeploy.quant.sensitivity import layer_sensitivity

    from .pipeline import capture_model, resolve_data, resolve_preprocess

    loaded = load_model(cfg.model.ref, cfg.model.weights)
    preprocess = resolve_preprocess(cfg.data, loaded)
    calib, evaluation = resolve_data(cfg.data, loaded, preprocess, progress=cfg.progress)
    evaluation = evaluation.subset(cfg.data.eval_limit or DEFAULT_SAMPLES, seed=cfg.data.seed)
    x = torch.from_numpy(evaluation.normalized(preprocess))
    qm = prepare(capture_model(loaded, cfg.model, x[:2]).graph, cfg.scheme)
    apply_ptq(qm, [torch.from_numpy(b) for b in calib.batches(preprocess, 64)],
              effective_ptq(cfg), progress=cfg.progress)
    rows = layer_sensitivity(qm, x, evaluation.labels)
    return SensitivityReport(loaded.name, qm.label, len(evaluation), rows, top)
