"""Accuracy-vs-latency audits: sweeps over models, schemes, targets, thread counts and batch
sizes, resumable, on a local process pool or Ray, with paired statistics against float and an
HTML report. ``run_audit(load_spec("spec.yaml"), "out/")``."""
from __future__ import annotations

from .spec import AuditSpec, SchemeEntry, load_spec, parse_spec
from .sweep import Audit, run_audit

__all__ = ["Audit", "AuditSpec", "SchemeEntry", "load_spec", "parse_spec", "run_audit"]
