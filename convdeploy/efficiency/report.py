"""The profile as text: one table per (model, precision, target, threads, batch)."""
from __future__ import annotations

from .analysis import EfficiencyProfile


def summary_line(p: EfficiencyProfile) -> str:
    share = p.attributed_ms / p.latency_ms if p.latency_ms else 0.0
    return (f"{p.model} {p.precision} on {p.target}, {p.threads} thread(s), batch {p.batch}: "
            f"{p.latency_ms:.3f} ms measured, waterline {p.waterline_ms:.3f} ms "
            f"({p.waterline_ms / p.latency_ms:.0%} of it), model efficiency "
            f"{p.model_efficiency:.0%} of the {p.main_dtype} peak; layers account for "
            f"{share:.0%}, unattributed {p.unattributed_ms:.3f} ms ({p.method})")


def table(p: EfficiencyProfile, *, top: int | None = None) -> list[str]:
    rows = sorted(p.layers, key=lambda r: -r.ms)[:top] if top else p.layers
    lines = ["| layer | op | dtype | ms | share | MMACs | KB | MAC/B | GMAC/s | efficiency | "
             "bound ms | bound |", "|" + "---|" * 12]
    for r in rows:
        eff = "" if r.efficiency is None else f"{r.efficiency:.2f}"
        lines.append(f"| {r.layer} | {r.op} | {r.dtype} | {r.ms:.4f} | "
                     f"{r.ms / p.latency_ms:.1%} | {r.macs / 1e6:.2f} | {r.bytes / 1e3:.1f} | "
                     f"{r.intensity:.1f} | {r.gmacs:.1f} | {eff} | {r.bound_ms:.4f} | "
                     f"{r.bound} |")
    lines.append(f"| (unattributed) | | | {p.unattributed_ms:.4f} | "
                 f"{p.unattributed_ms / p.latency_ms:.1%} | | | | | | | |")
    return lines


def markdown(profiles: list[EfficiencyProfile]) -> str:
    out = ["# Per-layer efficiency", "",
           "Times: each kernel's share of the profiled run applied to the unprofiled median "
           "latency; bounds: max(MACs / peak, compulsory bytes / bandwidth) with this "
           "machine's measured peaks (peaks.json in the cache); efficiency: achieved GMAC/s "
           "over the peak of the kernel's dtype.", ""]
    for p in profiles:
        peaks = ", ".join(f"{d} {k.gmacs:.1f} GMAC/s ({k.source})" for d, k in p.peaks.items())
        out += [f"## {p.model} {p.precision} on {p.target} ({p.threads} thread(s), batch "
                f"{p.batch})", "", summary_line(p), "", f"Peaks: {peaks}.", ""]
        out += [f"- {w}" for w in p.warnings]
        out += ["", *table(p), ""]
    return "\n".join(out)
