"""The per-layer efficiency tables: bench/efficiency.py's profiles (efficiency gap, waterline,
how much of each latency the layers account for) and the data-movement rewrite's before/after."""
from __future__ import annotations

from render_tables import _load, _ms, _num, _pct, _table, machine, sentence

DISTURBED = 0.2  # other processes' cores beside a timing, from which it is flagged


def efficiency_section() -> list[str]:
    data = _load("efficiency.json")
    if data is None:
        return ["Not run yet: `python bench/efficiency.py` (alone on the machine).", ""]
    rows = []
    for c in data["cells"]:
        rows.append([c["model"], c["precision"], c["target"], str(c["threads"]), str(c["batch"]),
                     _ms(c["latency_ms"]), _ms(c["waterline_ms"]),
                     _pct(c["waterline_ms"] / c["latency_ms"]), _pct(c["model_efficiency"]),
                     _pct(c["attributed_share"]), _num(c.get("max_layer_efficiency"), 2),
                     c["peaks"][c["main_dtype"]]["source"].split(";")[0].removeprefix(
                         "measured (").rstrip(")"),
                     _num(c["peaks"][c["main_dtype"]]["gmacs"], 0)])
    lines = [f"Machine: {machine(data['environment'])}; revision {data.get('revision')}; "
             f"{data['wall_seconds'] / 60:.0f} min.", "",
             *_table(["model", "precision", "target", "threads", "batch", "latency ms",
                      "waterline ms",
                      "waterline / latency", "model efficiency", "layers account for",
                      "max layer efficiency", "peak from", "peak GMAC/s"], rows), "",
             "Waterline: the sum of every layer's roofline bound (MACs / peak, bytes / "
             "bandwidth) with this machine's measured peaks; model efficiency: all MACs over "
             "the latency, over the peak of the dtype carrying most MACs; layers account for: "
             "the kernels' share of the latency, their dispatch included (LiteRT: ops timed "
             "alone, scaled to their segment's time in the model; OpenVINO: its counters, "
             "plus the time outside them measured on the model's prefixes; see "
             "docs/efficiency.md). Per-layer tables and plots: `bench/results/efficiency.json`, "
             "`bench/results/efficiency/`.", ""]
    lines += _slowest(data) + rewrite_section(data)
    return lines


def _slowest(data: dict) -> list[str]:
    """The five slowest layers of each model's W8A8 cell on cpu-ort, 1 thread."""
    out = []
    for c in data["cells"]:
        if c["target"] != "cpu-ort" or c["precision"] == "float" or c["threads"] != 1 \
                or c["batch"] != 1:
            continue
        top = sorted(c["layers"], key=lambda r: -r["ms"])[:5]
        out += [f"Slowest layers, {c['model']} {c['precision']} on cpu-ort (1 thread, batch 1):",
                "",
                *_table(["layer", "op", "ms", "MMACs", "MAC/B", "efficiency", "bound ms",
                         "bound"],
                        [[r["layer"], r["op"], _ms(r["ms"]), _num(r["macs"] / 1e6, 2),
                          _num(r["intensity"], 1), _num(r["efficiency"], 2),
                          _ms(r["bound_ms"]), r["bound"]] for r in top]), ""]
    return out


def rewrite_section(data: dict) -> list[str]:
    rows = [[r["model"], r["target"], r["precision"], str(r["threads"]), str(r["batch"]),
             ", ".join(f"{k} {v}" for k, v in r["rewrites"].items()), _ms(r["off_ms"]),
             _ms(r["on_ms"]), _num(r["speedup"], 3), "yes" if r["outputs_identical"] else "NO",
             _num(r.get("other_cpu_cores"), 2)] for r in data["rewrite"]]
    if not rows:
        return []
    return ["Exact data-movement rewrite (`exporters/codes_rewrite.py`), off vs on: medians of "
            "alternating >= 1 s windows in one process; outputs on 256 test images compared "
            "bit for bit.", "",
            *_table(["model", "target", "precision", "threads", "batch", "rewrites", "off ms",
                     "on ms", "off / on", "identical", "other cores"], rows), ""]


def efficiency_summary() -> list[str]:
    data = _load("efficiency.json")
    if data is None:
        return []
    cells = data["cells"]
    gaps = ", ".join(f"{c['model'].removesuffix('-cifar10')} {c['precision']} "
                     f"{_pct(c['model_efficiency'])}" for c in cells
                     if c["target"] == "cpu-ort" and c["threads"] == 1 and c["batch"] == 1)
    best = max(data["rewrite"], key=lambda r: r["speedup"], default=None)
    identical = all(r["outputs_identical"] for r in data["rewrite"])
    lines = [f"- Per-layer efficiency (`bench/efficiency.py`, "
             f"{machine(data['environment']).split(';')[0]}): model efficiency on cpu-ort, "
             f"1 thread, batch 1: {gaps}."]
    if best:
        lines.append(f"- Exact shortcut rewrite: up to x{best['speedup']:.3f} "
                     f"({best['model']} {best['precision']} on {best['target']}, "
                     f"{best['threads']} thread(s), batch {best['batch']}), outputs "
                     f"{'identical' if identical else 'DIFFERENT'}.")
    return lines + [""]


def tune_section(name: str = "tune.json") -> list[str]:
    data = _load(name)
    if data is None:
        how = ("`python bench/tune.py --target dsp-qnn-htp --out bench/results/tune_htp.json`"
               if "htp" in name else "`python bench/tune.py` (alone on the machine)")
        return [f"Not run yet: {how}.", ""]
    estimated = any("estimated_cost" in f for run in data["runs"] for f in run["final"])
    lines = [f"Machine: {machine(data['environment'])}; revision {data.get('revision')}; "
             f"target {data['target']}, 1 thread, batch 1; {data['wall_seconds'] / 60:.0f} "
             "min.", ""]
    if data.get("note"):
        lines += [f"Note: {sentence(data['note'])}", ""]
    if estimated:
        lines += ["The HTP's timings mean nothing here (emulated): its searches minimise an "
                  "estimate, the share of MACs at 16-bit activations, not a measured latency.",
                  ""]
    rows = []
    for run in data["runs"]:
        for f in run["final"]:
            raised = next((v for k, v in f.items() if k.startswith("raised_to_")), None)
            rows.append([run["model"], _num(run["budget"]["max_drop"], 1), f["label"],
                         str(f["float_layers"] if not estimated else
                             "float" if raised is None else raised),
                         _pct(f["accuracy"]), f"{f['accuracy_delta_points']:+.2f}",
                         "yes" if f["meets_budget"] else "no",
                         _num(f.get("estimated_cost"), 3) if estimated
                         else _ms(f["latency_ms"]), _versus(f),
                         _num(run["seconds"].get(f["label"]), 0)])
    held_out = data["runs"][0]["reference"]["eval_images"] if data["runs"] else 0
    lines += _table(["model", "budget (points)", "configuration",
                     "16-bit layers" if estimated else "float layers",
                     f"accuracy ({held_out:,} held-out)", "delta vs float", "meets budget",
                     "est. share of MACs at A16" if estimated else "latency ms",
                     "latency-driven vs this", "search s"], rows)
    return lines + ["Latency: medians of alternating windows, a fresh session each; "
                    "\"latency-driven vs this\" is this row's median over the latency-driven "
                    "choice's (> 1: ours faster), and faster/slower only where a Mann-Whitney "
                    "test on the windows says so at 0.05 (else a tie).", ""]


def _versus(row: dict) -> str:
    vs = row.get("latency_driven_vs_this")
    return "" if vs is None else f"x{vs['ratio']:.2f}, {vs['verdict'].split(' (')[0]}"


def tune_summary() -> list[str]:
    data = _load("tune.json")
    if data is None:
        return []
    parts = []
    for run in data["runs"]:
        f = {x["label"]: x for x in run["final"]}
        ours = f.get("latency-driven")
        base = [f[k] for k in ("revert-most-sensitive", "first-fit") if k in f]
        if ours is None:
            parts.append(f"{run['model'].removesuffix('-cifar10')} {run['budget']['max_drop']}: "
                         "no configuration within the budget (its bound) on the tuning split; "
                         "baselines " + "/".join(_ms(b["latency_ms"]) for b in base) + " ms")
            continue
        others = [b["latency_ms"] for b in base]
        if all("latency_driven_vs_this" in b for b in base):  # decided on the windows
            verdict = ", ".join(_versus(b) for b in base)
        else:  # results written before the windows were compared
            ratio = min(others) / ours["latency_ms"] if others else None
            same = all(b["config"] == ours["config"] for b in base)
            verdict = ("same configuration" if same else
                       "tie" if ratio is not None and abs(ratio - 1) <= 0.02
                       else f"x{ratio:.2f}" if ratio else "")
        held = "" if ours["meets_budget"] else "; misses the budget on the held-out split"
        parts.append(f"{run['model'].removesuffix('-cifar10')} {run['budget']['max_drop']}: "
                     f"{_ms(ours['latency_ms'])} ms vs " + "/".join(_ms(o) for o in others)
                     + f" ({verdict}{held})")
    windows = any("latency_driven_vs_this" in x for run in data["runs"] for x in run["final"])
    rule = "faster/slower: Mann-Whitney on the windows at 0.05" if windows else "tie = within 2%"
    return [f"- `convdeploy tune` on {data['target']} (latency-driven vs NNCF-style/INC-style "
            f"choice, ms; {rule}): {'; '.join(parts)}.", ""]
