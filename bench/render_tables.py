"""What every rendered table shares: reading bench/results/*.json, number formats, Markdown
tables, the machine line, and the tables of an audit-backed benchmark (``_spec_audit``)."""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _kb(v) -> str:
    return "-" if not v else f"{v / 1024:,.0f} KB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows)]


def sentence(text: str) -> str:
    """``text`` ending in one full stop (notes are written with or without one)."""
    return text if text.rstrip().endswith((".", "!", "?")) else text.rstrip() + "."


def machine(env: dict) -> str:
    """``Intel Xeon, 2 cores, torch 2.13.0, ...`` from a result's environment block."""
    versions = env.get("versions", {})
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if v and k != "convdeploy")
    cores = f", {env['cores']} cores" if env.get("cores") else ""
    return f"{env.get('cpu', '?')}{cores}; {libs}"


# ---------------------------------------------------------------- the audit


def _reuse_text(bench: dict) -> str:
    """What a run computed and reused, and what its immediate rerun recomputed."""
    return (f"computed {sum(bench.get('units_computed', {}).values())} units in "
            f"{bench.get('wall_seconds', 0) / 60:.1f} min and reused "
            f"{sum(bench.get('units_reused_first_run', {}).values())} from an earlier run of the "
            f"same folder; a rerun took {bench.get('rerun_wall_seconds', 0):.1f} s and "
            f"recomputed {sum(bench.get('rerun_units_computed', {}).values())}")


def _spec_audit(data: dict, header: list[str], extra) -> list[str]:
    """An audit-backed benchmark's tables, one per model: accuracy, agreement, LSB distance
    and the columns ``extra(group of cells, first cell)`` adds."""
    bench = data.get("benchmark", {})
    lines = [f"Spec `{bench.get('spec')}`, full test split unless noted"
             + (f" (eval limit {bench['eval_limit']})" if bench.get("eval_limit") else "")
             + f". Machine: {machine(data['fingerprints']['environment'])}.", ""]
    if bench.get("commit"):
        lines.append(f"- convdeploy {bench['commit']}; this run {_reuse_text(bench)}.")
    if bench.get("note"):
        lines.append(f"- Note: {sentence(bench['note'])}")
    for model, why in bench.get("models_skipped", {}).items():
        lines.append(f"- **{model} not run**: {why}.")
    lines.append("")
    cells = data["cells"]
    for model in dict.fromkeys(c["model"] for c in cells):
        rows = []
        mine = [c for c in cells if c["model"] == model]
        for key in dict.fromkeys((c["scheme"], c["target"]) for c in mine):
            group = [c for c in mine if (c["scheme"], c["target"]) == key]
            first = group[0]
            if first.get("status") != "ok":
                rows.append([*key, "not run: " + str(first.get("reason", ""))[:90]]
                            + ["-"] * (len(header) - 3))
                continue
            rows.append([*key, _pct(first.get("accuracy")), _pct(first.get("top1_agreement")),
                         _num(first.get("sqnr_db"), 1),
                         _num(first.get("max_lsb_vs_int_reference"), 0), *extra(group, first)])
        lines += [f"**{model}**", "", *_table(header, rows), ""]
    from convdeploy.audit.outputs import disturbed_note

    note = disturbed_note(cells)  # the ratios above come from these latency cells
    return lines + ([note, ""] if note else [])


_AUDIT_COLUMNS = ["scheme", "target", "accuracy", "top-1 agreement", "SQNR dB",
                  "max LSB vs int-ref"]


def _scheme_checks(cells: list[dict], bars: dict[str, float | None], speed_targets,
                   speed_by: str, not_run: bool = False) -> list[str]:
    """An issue's bars, from the cells, one line per model: each scheme's worst accuracy change
    against float over the targets that run it (``bars``: the allowed loss in points, None to
    state it only), the pairs not run and why, LiteRT's reference kernels against the integer
    reference, and int8/float time on ``speed_targets`` for each ``speed_by`` (threads or
    batch_size). ``not_run``: count the scheme/target pairs not run, naming every reason that
    is not a target's own scheme refusal; a failed cell is always counted."""
    lines = ["Checks (accuracy differences against the torch float model on the same samples; "
             "int8/float: float time over int8 time"
             + (" at batch 1" if speed_by == "threads" else "") + "):", ""]
    label = {"threads": lambda k: f"{k} thread{'s' if k > 1 else ''}",
             "batch_size": lambda k: f"batch {k}"}[speed_by]
    for model in dict.fromkeys(c["model"] for c in cells):
        mine = [c for c in cells if c["model"] == model]
        ok = [c for c in mine if c.get("status") == "ok"]
        parts = []
        for preset, bar in bars.items():
            best = {c["target"]: c for c in ok if c["preset"] == preset and
                    c.get("accuracy_delta") is not None}
            if best:
                worst = min(best.values(), key=lambda c: c["accuracy_delta"])
                change = 100 * worst["accuracy_delta"] + 0.0  # no "-0.00"
                verdict = ("stated, no bar" if bar is None else
                           f"{'within' if change >= -bar else 'NOT within'} the {bar:.0f}-point "
                           "bar")
                parts.append(f"{preset.upper()} worst change {change:+.2f} pts on "
                             f"{worst['target']} of {len(best)} targets ({verdict})")
        refused = {(c["scheme"], c["target"]): c.get("reason", "") for c in mine
                   if c.get("status") != "ok"}
        if not_run or any(c.get("status") not in ("ok", "not supported") for c in mine):
            parts.append(f"{len(refused)} scheme/target pairs not run" + "".join(
                f"; {s} on {t}: {why}" for (s, t), why in refused.items()
                if not why.startswith(t)))
        refs = [c for c in ok if c["target"] == "mobile-litert-ref" and c["preset"] != "float"
                and c.get("max_lsb_vs_int_reference") is not None]
        if refs:
            worst = max(refs, key=lambda c: c["max_lsb_vs_int_reference"])
            parts.append(f"mobile-litert-ref vs int-reference max "
                         f"{worst['max_lsb_vs_int_reference']} LSB ("
                         f"{100 * min(c['bit_exact_fraction'] for c in refs):.2f}% of outputs "
                         "equal)")
        for target in speed_targets:
            speed = {c.get(speed_by): c.get("speedup_vs_float") for c in ok
                     if c["target"] == target and c["preset"] == "w8a8"}
            if any(speed.values()):
                parts.append(f"int8/float on {target} " + ", ".join(
                    f"{v:.2f}x ({label(k)})" for k, v in sorted(speed.items()) if v))
        if parts:
            lines.append(f"- {model}: " + "; ".join(parts) + ".")
    return lines + [""]


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- assembling
