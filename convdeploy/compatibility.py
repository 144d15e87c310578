"""What each target cannot run of a model, before any calibration or data: ``convdeploy
targets --model M``.

The model is captured and exported once as float and QDQ ONNX (and TFLite when a target takes
it), with quantizer ranges set from one synthetic batch: the graph's structure, not its
numbers, decides what a target accepts. Every target then answers ``check_scheme`` and
``check`` on the artifact it consumes.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from convdeploy.errors import ConvdeployError
from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.quant.scheme import QuantScheme
from convdeploy.targets import registry

from .config import DataConfig, ModelSource


@dataclass
class TargetVerdict:
    target: str
    available: bool
    reasons: list[str] = field(default_factory=list)
    suggested_scheme: str = ""

    @property
    def runs(self) -> bool:
        return self.available and not self.reasons


def _exports(model: ModelSource, data: DataConfig, scheme: QuantScheme,
             directory: Path) -> tuple[list[Artifact], list[str]]:
    """Float and quantized artifacts in every format, and the reasons an exporter refused."""
    import torch

    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.models.loading import load_model
    from convdeploy.quant import capture, quantize
    from convdeploy.quant.config import PTQConfig

    from .pipeline import resolve_preprocess

    loaded = load_model(model.ref, model.weights)
    preprocess = resolve_preprocess(data, loaded)
    example = torch.randn(2, *preprocess.input_shape, generator=torch.Generator().manual_seed(0))
    gm = capture(loaded.model, example)
    qm = quantize(gm, scheme, [example], PTQConfig(methods=()), progress=False)
    artifacts = [OnnxExporter(quantized=False, example=example).export(qm, directory),
                 OnnxExporter(quantized=True, example=example).export(qm, directory)]
    refused = []
    from convdeploy.exporters.tflite_export import TfliteExporter

    for source in list(artifacts):
        try:
            artifacts.append(TfliteExporter().export(source, directory))
        except (ConvdeployError, ImportError) as exc:
            refused.append(f"TFLite export of the {source.precision} model: "
                           f"{getattr(exc, 'problem', exc)}")
    return artifacts, refused


def compatibility(model: ModelSource, scheme: QuantScheme, *, data: DataConfig = DataConfig(),
                  names: list[str] | None = None) -> list[TargetVerdict]:
    """Every target's verdict on ``model`` quantized with ``scheme`` (see the module doc)."""
    targets = [registry.get(n) for n in (names or registry.names())]
    with tempfile.TemporaryDirectory(prefix="convdeploy-compat-") as tmp:
        artifacts, refused = _exports(model, data, scheme, Path(tmp))
        verdicts = []
        for t in targets:
            missing = t.unavailable()
            v = TargetVerdict(t.name, missing is None,
                              suggested_scheme=getattr(t, "suggested_scheme", ""))
            if missing:
                v.reasons.append(missing)
                verdicts.append(v)
                continue
            v.reasons += t.check_scheme(scheme)
            mine = [a for a in artifacts if a.format in t.formats and
                    (a.quantized or getattr(t, "runs_float", True))]
            if not mine and ArtifactFormat.TFLITE in t.formats:
                v.reasons += refused
            if not v.reasons:
                for a in mine:
                    v.reasons += [f"{a.precision}: {r}" for r in t.check(a)]
            verdicts.append(v)
    return verdicts


def verdict_table(verdicts: list[TargetVerdict]) -> str:
    width = max(len(v.target) for v in verdicts)
    lines = []
    for v in verdicts:
        if v.runs:
            text = "runs"
        else:
            text = ("unavailable: " if not v.available else "cannot: ") + "; ".join(v.reasons)
            if v.available and v.suggested_scheme:
                text += f" (suggested scheme: {v.suggested_scheme})"
        lines.append(f"{v.target.ljust(width)}  {text}")
    return "\n".join(lines)
