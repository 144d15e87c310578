"""The target protocol: ``check`` says every reason a target cannot run an artifact, ``compile``
returns a ``Runnable``. A target whose runtime or hardware is missing says so; it never fakes."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat


@dataclass(frozen=True)
class RuntimeOptions:
    """How a runtime is set up for a run (recorded in the report)."""

    threads: int = 1
    # where a target may leave files the user keeps (the run's output folder: fpga-hls writes
    # its project there); None: inside the compile's work folder
    keep_dir: Path | None = None
    # the ONNX targets' exact data-movement rewrites (exporters/codes_rewrite.py); off only to
    # measure what they save
    graph_rewrites: bool = True


class Runnable(Protocol):
    """A compiled model: named float inputs in, named outputs out."""

    threads: int
    details: dict[str, Any]

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Target(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    formats: ClassVar[tuple[ArtifactFormat, ...]]

    def unavailable(self) -> str | None:
        """Why this target cannot run on this machine at all (None = it can)."""

    def check(self, artifact: Artifact) -> list[str]:
        """Every reason this target cannot run ``artifact``; [] means supported."""

    def check_scheme(self, scheme: Any) -> list[str]:
        """Every reason this target cannot run a model quantized with ``scheme``."""

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> Runnable: ...


@dataclass
class TargetBase:
    """Shared behaviour: runtime presence and format checks. Subclasses add op-level checks."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    formats: ClassVar[tuple[ArtifactFormat, ...]] = ()
    runtime_module: ClassVar[str | None] = None  # importable name of the runtime package
    runtime_package: ClassVar[str] = ""  # what to pip install
    weight_bits: ClassVar[tuple[int, ...]] = (4, 8)  # weight widths it can execute
    activation_bits: ClassVar[tuple[int, ...]] = (4, 8, 16)
    runs_float: ClassVar[bool] = True  # False: quantized artifacts only (float ones are skipped)
    lowers_graph: ClassVar[bool] = False  # runs exporters/lowering.py's OpGraph
    suggested_scheme: ClassVar[str] = "w8a8"  # the preset that fits the target's hardware
    latency_not_meaningful: ClassVar[str | None] = None  # why its timings are not reported
    profiles: ClassVar[bool] = False  # has ``profile()``: per-kernel times (docs/efficiency.md)
    details: dict[str, Any] = field(default_factory=dict)

    def check_scheme(self, scheme) -> list[str]:
        """Every reason this target cannot run models quantized with ``scheme`` (a
        ``QuantScheme``): asked before calibration, so no long computation is wasted."""
        reasons = []
        widths = {scheme.weights.bits} | {o.weights.bits for o in scheme.overrides if o.weights}
        for bits in sorted(widths - set(self.weight_bits)):
            reasons.append(f"{self.name} has no {bits}-bit weights (it runs "
                           f"{', '.join(map(str, self.weight_bits))}-bit)")
        for bits in sorted(scheme.activation_widths - set(self.activation_bits)):
            reasons.append(f"{self.name} has no {bits}-bit activations (it "
                           f"runs {', '.join(map(str, self.activation_bits))}-bit)")
        return reasons

    def unavailable(self) -> str | None:
        if self.runtime_module and importlib.util.find_spec(self.runtime_module) is None:
            return (f"runtime {self.runtime_module!r} is not installed "
                    f"(pip install {self.runtime_package or self.runtime_module})")
        return None

    def check(self, artifact: Artifact) -> list[str]:
        reasons = []
        missing = self.unavailable()
        if missing:
            reasons.append(missing)
        if artifact.format not in self.formats:
            accepted = ", ".join(f.value for f in self.formats)
            reasons.append(f"{self.name} runs {accepted} artifacts, not {artifact.format.value}")
        if artifact.scheme is not None:
            reasons.extend(self.check_scheme(artifact.scheme))
        if not reasons:
            reasons.extend(self.check_ops(artifact))
        return reasons

    def check_ops(self, artifact: Artifact) -> list[str]:
        return []
