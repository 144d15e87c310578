"""The profile's figures (matplotlib, headless), as PNG bytes or files.

- waterline: per layer, the measured time beside its roofline bound (compute- or memory-bound
  coloured), float and int8 side by side for one (target, threads, batch);
- efficiency gap: per profiled cell, the waterline (ideal) and the measured latency on one
  axis, with accuracy on the other when the caller knows it (the audit does).
"""
from __future__ import annotations

from pathlib import Path

from convdeploy.audit.plots import figure, png

from .analysis import EfficiencyProfile

BOUND_COLOURS = {"compute": "#d95f02", "memory": "#1b9e77", "": "#999999"}


def waterline_png(profiles: list[EfficiencyProfile], *, top: int = 24) -> bytes:
    """One panel per profile (same target, threads and batch): the ``top`` slowest layers."""
    from matplotlib.patches import Patch

    fig, axes = figure(len(profiles), width=6.0, height=0.28 * top + 1.6)
    for ax, p in zip(axes, profiles):
        rows = sorted(p.layers, key=lambda r: -r.ms)[:top][::-1]
        y = range(len(rows))
        ax.barh([i + 0.2 for i in y], [r.ms * 1e3 for r in rows], height=0.4,
                color="#7570b3", label="measured")
        ax.barh([i - 0.2 for i in y], [r.bound_ms * 1e3 for r in rows], height=0.4,
                color=[BOUND_COLOURS[r.bound] for r in rows], label="roofline bound")
        ax.set_yticks(list(y), [f"{r.layer[:28]} ({r.dtype})" for r in rows], fontsize=7)
        ax.set_xlabel("microseconds")
        ax.set_title(f"{p.precision} on {p.target}: {p.latency_ms:.3f} ms measured, "
                     f"waterline {p.waterline_ms:.3f} ms", fontsize=8)
        handles = [Patch(color="#7570b3", label="measured")] + [
            Patch(color=c, label=f"bound ({k}-bound)") for k, c in BOUND_COLOURS.items() if k]
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    return png(fig)


def gap_png(profiles: list[EfficiencyProfile],
            accuracy: dict[tuple[str, str], float] | None = None) -> bytes:
    """Each cell's waterline (ideal) and measured latency; y is accuracy where given (keyed
    by (precision, target)), else the cell's position."""
    fig, axes = figure(1, width=7.0, height=0.45 * len(profiles) + 2.0)
    ax = axes[0]
    for i, p in enumerate(profiles):
        y = accuracy.get((p.precision, p.target), i) if accuracy else i
        ax.plot([p.waterline_ms, p.latency_ms], [y, y], color="#999999", zorder=1)
        ax.scatter([p.waterline_ms], [y], marker="|", s=120, color="#1b9e77", zorder=2)
        ax.scatter([p.latency_ms], [y], marker="o", color="#7570b3", zorder=2)
        ax.annotate(f"{p.precision} {p.target} ({p.model_efficiency:.0%})",
                    (p.latency_ms, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("batch latency, ms (| waterline, o measured; log)")
    ax.set_ylabel("top-1 accuracy" if accuracy else "cell")
    if not accuracy:
        ax.set_yticks([])
    ax.set_title("Efficiency gap: ideal (sum of roofline bounds) vs measured", fontsize=9)
    return png(fig)


def write_plots(profiles: list[EfficiencyProfile], out: Path) -> list[Path]:
    """``waterline-<target>-t<threads>-b<batch>.png`` per (target, threads, batch) and
    ``efficiency-gap.png``."""
    from convdeploy.files import write_bytes_atomic

    groups: dict[tuple, list[EfficiencyProfile]] = {}
    for p in profiles:
        groups.setdefault((p.target, p.threads, p.batch), []).append(p)
    paths = []
    for (target, threads, batch), group in groups.items():
        path = Path(out) / f"waterline-{target}-t{threads}-b{batch}.png"
        paths.append(write_bytes_atomic(path, waterline_png(group)))
    if profiles:
        paths.append(write_bytes_atomic(Path(out) / "efficiency-gap.png", gap_png(profiles)))
    return paths


def audit_figures(cells: list[dict]) -> list[tuple[str, str, bytes]]:
    """(name, title, PNG) for the audit page: per model the efficiency gap (accuracy vs
    waterline and measured latency) and per (model, target) the waterline of every scheme,
    at batch 1 (or the smallest batch) and the fewest threads."""
    profiled = [c for c in cells if c.get("efficiency")]
    figures = []
    for model in dict.fromkeys(c["model"] for c in profiled):
        mine = [c for c in profiled if c["model"] == model]
        batch = min(c["batch_size"] for c in mine)
        threads = min(c["threads"] for c in mine)
        chosen = [c for c in mine if c["batch_size"] == batch and c["threads"] == threads]
        profiles = [EfficiencyProfile.from_dict(c["efficiency"]) for c in chosen]
        accuracy = {(c["scheme"], c["target"]): c["accuracy"] for c in chosen
                    if c.get("accuracy") is not None}
        figures.append((f"gap-{model}", f"{model}: efficiency gap (batch {batch}, {threads} "
                        f"thread(s))", gap_png(profiles, accuracy or None)))
        for target in dict.fromkeys(p.target for p in profiles):
            group = [p for p in profiles if p.target == target]
            figures.append((f"waterline-{model}-{target}", f"{model} on {target}: measured "
                            f"vs roofline bound per layer", waterline_png(group, top=16)))
    return figures
