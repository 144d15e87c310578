"""The audit's outputs, each written atomically: ``audit.json`` and ``cells.csv`` (every
figure), ``audit.md`` (tables), ``audit.html`` (one self-contained page: figures embedded as
PNG, no external file or script), and the terminal's table of Pareto-optimal cells."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import asdict

from convdeploy.files import write_bytes_atomic, write_text_atomic
from convdeploy.latency import busy_cores, disturbed
from convdeploy.report import _finite

AUDIT_VERSION = 1
CSV_FIELDS = ("model", "scheme", "target", "threads", "batch_size", "status", "reason",
              "accuracy", "accuracy_ci95", "sim_accuracy", "float_accuracy", "accuracy_delta",
              "accuracy_delta_ci95", "mcnemar_b", "mcnemar_c", "mcnemar_p", "mcnemar_midp",
              "verdict", "top1_agreement", "sqnr_db", "max_lsb_vs_simulation",
              "max_lsb_vs_int_reference", "bit_exact_fraction", "latency_median_ms",
              "latency_p90_ms", "per_image_ms", "speedup_vs_float", "pareto", "model_size_bytes",
              "latency_status", "latency_reason", "latency_note", "node", "other_cpu_cores",
              "steal_cpu_cores", "eval_seconds", "waterline_ms", "model_efficiency",
              "attributed_share")


def to_dict(audit) -> dict:
    spec = asdict(audit.spec)
    spec["schemes"] = [e.label for e in audit.spec.schemes]
    return _finite({
        "version": AUDIT_VERSION, "spec": spec, "executor": audit.executor,
        "wall_seconds": audit.wall_seconds, "reused": audit.reused,
        "computed": audit.computed, "failed_units": audit.failed,
        "fingerprints": audit.fingerprints, "cells": audit.cells,
        "pareto": [_short(c) for c in audit.cells if c.get("pareto")]})


def _short(c: dict) -> dict:
    return {k: c.get(k) for k in ("model", "scheme", "target", "threads", "batch_size",
                                  "accuracy", "latency_median_ms", "verdict")}


def write_outputs(audit) -> None:
    data = to_dict(audit)
    out = audit.out
    write_text_atomic(out / "audit.json", json.dumps(data, indent=1, default=str))
    write_text_atomic(out / "cells.csv", cells_csv(audit.cells))
    write_text_atomic(out / "audit.md", markdown(data))
    write_bytes_atomic(out / "audit.html", page(data).encode("utf-8"))


def cells_csv(cells: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for c in cells:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                         for k, v in c.items()})
    return buf.getvalue()


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _p(v) -> str:
    return "-" if v is None else (f"{v:.3g}" if v >= 1e-4 else f"{v:.1e}")


HEADER = ("model", "scheme", "target", "threads", "batch", "accuracy (95% CI)", "vs float",
          "McNemar p", "verdict", "max LSB vs int-ref", "latency ms (median)", "speed-up",
          "Pareto")


def table_rows(cells: list[dict]) -> list[list[str]]:
    rows = []
    for c in cells:
        if c.get("status") != "ok":
            rows.append([c["model"], c["scheme"], c["target"], "-", "-", c.get("status", "-"),
                         "-", "-", (c.get("reason") or "")[:90], "-", "-", "-", ""])
            continue
        ci = c.get("accuracy_ci95")
        acc = _pct(c.get("accuracy")) + (f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")
        delta = c.get("accuracy_delta")
        dci = c.get("accuracy_delta_ci95")
        vs = "-" if delta is None else (f"{100 * delta:+.2f} [{100 * dci[0]:+.2f}, "
                                        f"{100 * dci[1]:+.2f}]")
        lat = c.get("latency_median_ms")
        lat_text = (_ms(lat) + ("*" if disturbed(c) else "") if lat is not None else
                    (c.get("latency_note") or c.get("latency_reason") or "-"))
        lsb = c.get("max_lsb_vs_int_reference")
        rows.append([c["model"], c["scheme"], c["target"], str(c.get("threads") or "-"),
                     str(c.get("batch_size") or "-"), acc, vs, _p(c.get("mcnemar_p")),
                     c.get("verdict", "-"),
                     "-" if lsb is None else f"{lsb} ({100 * c['bit_exact_fraction']:.1f}% exact)",
                     lat_text[:60],
                     "-" if not c.get("speedup_vs_float") else f"{c['speedup_vs_float']:.2f}x",
                     "yes" if c.get("pareto") else ""])
    return rows


def terminal_table(cells: list[dict]) -> str:
    """The Pareto-optimal cells, per model and batch size (what the CLI prints)."""
    front = [c for c in cells if c.get("pareto")]
    if not front:
        return "no cell has both an accuracy and a latency: no Pareto front"
    header = ["model", "batch", "target", "scheme", "threads", "accuracy", "latency ms",
              "verdict"]
    rows = [header] + [[c["model"], str(c["batch_size"]), c["target"], c["scheme"],
                        str(c["threads"]), _pct(c["accuracy"]),
                        _ms(c["latency_median_ms"]) + ("*" if disturbed(c) else ""),
                        c.get("verdict", "-")]
                       for c in sorted(front, key=lambda c: (c["model"], c["batch_size"],
                                                             c["latency_median_ms"]))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def disturbed_note(cells: list[dict]) -> str | None:
    """How many latency cells were timed beside other work (marked * in the tables)."""
    timed = [c for c in cells if c.get("latency_median_ms") is not None]
    busy = [c for c in timed if disturbed(c)]
    if not busy:
        return None
    worst = max(busy_cores(c) for c in busy)
    return (f"* {len(busy)} of {len(timed)} latency cells were timed while other processes "
            f"(or the hypervisor) kept up to {worst:.2f} CPU cores busy: their figures are "
            "upper bounds; rerun them on a quiet machine.")


def _machine(data: dict) -> str:
    env = data["fingerprints"]["environment"]
    v = env["versions"]
    return (f"{env['cpu']}; " + ", ".join(f"{k} {v[k]}" for k in v if v[k]))


def _label(model: dict) -> str:
    """A spec model's name as the cells show it."""
    from convdeploy.config import ModelSource

    return ModelSource(**model).label


def markdown(data: dict) -> str:
    md = ["# convdeploy audit", "",
          f"Models: {', '.join(_label(m) for m in data['spec']['models'])}. Schemes: "
          f"{', '.join(data['spec']['schemes'])}. Targets: {', '.join(data['spec']['targets'])}.",
          f"Machine: {_machine(data)}. Executor: {data['executor']}. Wall time "
          f"{data['wall_seconds']:.0f} s; units reused {sum(data['reused'].values())}, "
          f"computed {sum(data['computed'].values())}, failed {data['failed_units']}.", "",
          "## Pareto-optimal cells", "", "```", terminal_table(data["cells"]), "```", "",
          "## Every cell", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(v.replace("|", "/") for v in r) + " |"
           for r in table_rows(data["cells"])]
    note = disturbed_note(data["cells"])
    md += ["", *([f"- {note}"] if note else []), "- *vs float*: accuracy difference with the paired bootstrap 95% interval, "
           "in points; *McNemar p*: exact two-sided test on the discordant samples; the verdict "
           "uses it at 0.05.",
           "- *max LSB vs int-ref*: largest output difference from the integer reference "
           "(0 = bit-exact), and the share of equal outputs.", ""]
    return "\n".join(md)


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;
padding:3px 6px;text-align:left}th{background:#f0f0f0}tr.pareto td{background:#eef7ee}
img{max-width:100%;border:1px solid #ddd;margin:6px 0}.muted{color:#666}code{font-size:12px}"""


def _efficiency_section(cells: list[dict]) -> list[str]:
    """Where the time goes (cells profiled with ``profile: true``): the efficiency gap and one
    waterline chart per (model, target) at batch 1 and the fewest threads."""
    from convdeploy.efficiency import plots as eplots

    figures = eplots.audit_figures(cells)
    if not figures:
        return []
    parts = ["<h2>Where the time goes</h2><p class='muted'>Per-layer times: the runtime's "
             "kernel shares applied to the cell's measured latency (LiteRT: each op timed "
             "alone). Bounds: max(MACs / peak, bytes / bandwidth), peaks measured on this "
             "machine per runtime, dtype and thread count. Waterline: the sum of the bounds."
             "</p>"]
    for name, title, png in figures:
        parts.append(f"<h3>{html.escape(title)}</h3><img id='fig-{html.escape(name)}' "
                     f"alt='{html.escape(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'>")
    return parts


def page(data: dict) -> str:
    from . import plots

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>convdeploy audit"
             f"</title><style>{CSS}</style></head><body>", "<h1>convdeploy audit</h1>",
             f"<p>Models: <b>{html.escape(', '.join(_label(m) for m in data['spec']['models']))}"
             f"</b>; schemes: {html.escape(', '.join(data['spec']['schemes']))}; targets: "
             f"{html.escape(', '.join(data['spec']['targets']))}.</p>",
             f"<p class='muted'>{html.escape(_machine(data))}. Executor {data['executor']}; "
             f"wall {data['wall_seconds']:.0f} s; units reused {sum(data['reused'].values())}, "
             f"computed {sum(data['computed'].values())}, failed {data['failed_units']}.</p>",
             "<h2>Pareto-optimal cells</h2>", f"<pre>{html.escape(terminal_table(data['cells']))}"
             "</pre>"]
    for name, title, fn in plots.FIGURES:
        png = fn(data["cells"])
        if png is None:
            continue
        parts.append(f"<h2>{html.escape(title)}</h2><img id='fig-{name}' alt='{name}' "
                     f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts += _efficiency_section(data["cells"])
    parts.append("<h2>Every cell</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                          for h in HEADER) + "</tr>")
    for cell, row in zip(data["cells"], table_rows(data["cells"])):
        cls = " class='pareto'" if cell.get("pareto") else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(v)}</td>" for v in row)
                     + "</tr>")
    parts.append("</table>")
    note = disturbed_note(data["cells"])
    if note:
        parts.append(f"<p><b>{html.escape(note)}</b></p>")
    worst = [c for c in data["cells"] if c.get("worst_classes")
             and c.get("verdict", "").startswith("worse")]
    if worst:
        parts.append("<h2>Classes that lose most (cells worse than float)</h2><ul>")
        for c in worst:
            text = ", ".join(f"{w['class']} {100 * w['delta']:+.1f}" for w in c["worst_classes"])
            parts.append(f"<li>{html.escape(c['model'])} {html.escape(c['scheme'])} on "
                         f"{html.escape(c['target'])}: {html.escape(text)} points</li>")
        parts.append("</ul>")
    parts.append("<p class='muted'>Accuracy intervals: Wilson 95%. Differences: paired "
                 "bootstrap 95%. Tests: exact McNemar (two-sided) and mid-p, against the float "
                 "model on the same samples. Latency: median of timed runs after warm-up, each "
                 "cell alone on the machine (checked: the CPU time other processes used while it "
                 "was timed is recorded per cell).</p></body></html>")
    return "\n".join(parts)
