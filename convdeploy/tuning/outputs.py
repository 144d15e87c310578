"""What ``convdeploy tune`` writes: ``tune.json`` (every measurement of every search, the final
table, the time each part took), ``overrides.txt`` (``--override`` lines of the chosen
configuration), ``tune.yaml`` (the same as ``export --config`` takes), ``tune.md`` and
``search.png`` (measured accuracy vs latency of every configuration each search evaluated)."""
from __future__ import annotations

import json
from pathlib import Path

from .run import TuneResult


def to_dict(r: TuneResult, budget: dict) -> dict:
    return {"model": r.model, "target": r.target, "budget": budget, "layers": r.layers,
            "reference": r.reference, "uniform": r.uniform, "notes": r.notes,
            "searches": [{"strategy": s.strategy, "chosen": None if s.chosen is None
                          else dict(s.chosen), "evaluations": s.evaluations,
                          "steps": [{"config": dict(st.config), "accuracy": st.measured,
                                     "accuracy_bound": st.accuracy,
                                     r.cost_key: st.latency_ms, "note": st.note}
                                    for st in s.steps],
                          "remeasured": [{"config": dict(c), "latency_windows_ms": ms}
                                         for c, ms in s.confirmed.items()]}
                         for s in r.searches],
            "final": r.final, "seconds": r.seconds}


def override_lines(r: TuneResult) -> list[str]:
    chosen = r.chosen()
    return [] if chosen is None else [f"--override {layer}={p}" for layer, p in chosen]


def export_yaml(r: TuneResult, cfg) -> str:
    """An ``export --config`` file: the model, data and the chosen scheme (``ptq: none``: the
    calibration tune measured, with no PTQ method on top)."""
    import yaml

    chosen = r.chosen() or ()
    user = [f"{o.layer}={o.value}" for o in cfg.scheme.overrides]
    tree = {"model": {"name": cfg.model.ref, **({"weights": cfg.model.weights}
                                                if cfg.model.weights else {})},
            "data": {k: v for k, v in (("calib", cfg.data.calib), ("eval", cfg.data.eval),
                                       ("calib_size", cfg.data.calib_size)) if v},
            "scheme": {"scheme": cfg.scheme.with_(overrides=()).name, "ptq": "none",
                       "overrides": user + [f"{layer}={p}" for layer, p in chosen]},
            "targets": [r.target]}
    return yaml.safe_dump(tree, sort_keys=False)


def markdown(r: TuneResult, budget: dict) -> str:
    ref = r.reference
    lines = [f"# convdeploy tune: {r.model} on {r.target}", "",
             f"Budget: at most {budget['max_drop']} points below the float model"
             + (f", at least x{budget['min_speedup']} its speed" if budget.get("min_speedup")
                else "") + f". Tuning split {ref['tune_images']} images (float "
             f"{100 * ref['tune_accuracy']:.2f}%, {ref['source']}); a configuration meets the "
             f"budget there when the {100 * ref.get('confidence', 0.95):.0f}% upper bound of "
             f"its paired drop against float does; evaluation split "
             f"{ref['eval_images']} images.", "", *[f"- {n}" for n in r.notes], "",
             f"| configuration | {_raised_label(r)} | accuracy (eval) | 95% CI | delta vs float "
             f"(points) | McNemar p | meets budget | {_cost_label(r)} |", "|" + "---|" * 8]
    for f in r.final:
        cost = f.get("estimated_cost", f["latency_ms"])
        lat = "" if cost is None else f"{cost:.3f}"
        raised = next((v for k, v in f.items() if k.startswith("raised_to_")), None)
        shown = f["float_layers"] if _raised_label(r) == "float layers" else (
            "float" if raised is None else raised)
        lines.append(f"| {f['label']} | {shown} | "
                     f"{100 * f['accuracy']:.2f}% | "
                     f"{100 * f['accuracy_ci95'][0]:.2f}-{100 * f['accuracy_ci95'][1]:.2f} | "
                     f"{f['accuracy_delta_points']:+.2f} | {f['mcnemar_p']:.3g} | "
                     f"{'yes' if f['meets_budget'] else 'no'} | {lat} |")
    versus = [f for f in r.final if "latency_driven_vs_this" in f]
    lines += [""] if versus else []
    for f in versus:
        vs = f["latency_driven_vs_this"]
        lines.append(f"- latency-driven vs {f['label']}: x{vs['ratio']:.3f} "
                     f"({vs['verdict']}; medians of {len(f['latency_windows_ms'])} "
                     "alternating windows, a fresh session each)")
    lines += ["", "Searches (on the tuning split):", ""]
    for s in r.searches:
        lines.append(f"- {s.strategy}: {s.evaluations} configurations evaluated in "
                     f"{r.seconds.get(s.strategy, 0):.0f} s; chose "
                     + ("nothing within the budget" if s.chosen is None else
                        "no change (every layer 8-bit)" if not s.chosen else
                        f"{len(s.chosen)} layer(s) changed: " + ", ".join(
                            f"{k}={v}" for k, v in s.chosen))
                     + (f" (the fastest of the {len(s.confirmed)} fastest feasible, "
                        "measured again side by side)" if s.confirmed else ""))
    lines += ["", f"Search time in all: {r.seconds.get('total', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def _cost_label(r: TuneResult) -> str:
    return ("latency ms" if r.cost_key == "latency_ms"
            else "estimated cost (share of MACs at 16-bit activations; not measured)")


def _raised_label(r: TuneResult) -> str:
    key = next((k for f in r.final for k in f if k.startswith("raised_to_")), "")
    return "16-bit activation layers" if key.endswith("a16") else "float layers"


def search_png(r: TuneResult) -> bytes:
    from convdeploy.audit.plots import figure, png

    fig, axes = figure(1, width=7.0, height=4.5)
    ax = axes[0]
    for marker, s in zip("osD", r.searches):
        pts = [(st.latency_ms, 100 * st.accuracy) for st in s.steps
               if st.latency_ms is not None]
        if pts:
            ax.plot(*zip(*pts), marker=marker, alpha=0.7, label=s.strategy)
    ax.axhline(100 * r.reference["tune_accuracy"], color="#999999", ls=":", label="float")
    if r.max_drop is not None:
        ax.axhline(100 * r.reference["tune_accuracy"] - r.max_drop, color="#cc3333",
                   ls="--", label="budget floor")
    ax.set_xlabel("latency, ms (measured)" if r.cost_key == "latency_ms" else
                  "estimated cost: share of MACs at 16-bit activations (not measured)")
    ax.set_ylabel(f"top-1 on the tuning split, %: float less the "
                  f"{100 * r.reference.get('confidence', 0.95):.0f}% upper bound of the drop",
                  fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title(f"{r.model} on {r.target}: every configuration each search measured",
                 fontsize=9)
    return png(fig)


def write_outputs(r: TuneResult, cfg, budget: dict, out: Path) -> None:
    from convdeploy.files import write_bytes_atomic, write_text_atomic

    write_text_atomic(out / "tune.json", json.dumps(to_dict(r, budget), indent=1, default=str))
    write_text_atomic(out / "overrides.txt", "\n".join(override_lines(r)) + "\n")
    write_text_atomic(out / "tune.yaml", export_yaml(r, cfg))
    write_text_atomic(out / "tune.md", markdown(r, budget))
    write_bytes_atomic(out / "search.png", search_png(r))
