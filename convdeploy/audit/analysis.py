"""From finished units to cells: every figure of every (model, scheme, target, threads, batch)
cell, the paired statistics against float, speed-ups and the Pareto front.

Accuracy figures come from the stored logits, never re-run: the float reference (torch) and
the simulation of the quantize unit, the integer reference's logits for the LSB distance, the
target's own logits for the rest.
"""
from __future__ import annotations

import numpy as np

from convdeploy import check

from . import statistics as st
from .spec import AuditSpec
from .store import CellStore
from .units import AccuracyUnit

WORST_CLASSES = 3


def analyse(spec: AuditSpec, plan, store: CellStore) -> list[dict]:
    cells: list[dict] = []
    latency_by_pair: dict[str, list] = {}
    for unit in plan.latency:
        key = AccuracyUnit(unit.source, unit.target, unit.source.eval_batch_size).key
        latency_by_pair.setdefault(key, []).append(unit)
    for q in plan.quantize:
        qrec = store.get(q.key) if store.has(q.key) else {"status": "failed",
                                                           "reason": "not run"}
        refs = store.arrays(q.key) if qrec["status"] == "ok" else {}
        names = [u for u in plan.accuracy if u.source.key == q.key]
        int_ref = next((u for u in names if u.target == "int-reference"), None)
        int_ref_logits = _logits(store, int_ref)
        for target in (*spec.targets, *(["int-reference"] if int_ref and
                                         "int-reference" not in spec.targets else [])):
            base = {"model": q.model.label, "scheme": q.scheme.label, "preset": q.scheme.preset,
                    "target": target, "auto": target not in spec.targets}
            reason = plan.unsupported.get((q.scheme.label, target))
            if reason:
                cells.append({**base, "status": "not supported", "reason": reason})
                continue
            acc_unit = next(u for u in names if u.target == target)
            row = {**base, **_accuracy(store, acc_unit, qrec, refs, int_ref_logits,
                                       spec.bootstrap)}
            lat_units = latency_by_pair.get(acc_unit.key, [])
            if not lat_units:
                row["latency_note"] = plan.no_latency.get(target, "not measured")
                cells.append(row)
                continue
            for lu in lat_units:
                cells.append({**row, **_latency(store, lu, row)})
    _speedups(cells)
    _pareto(cells)
    return cells


def _logits(store: CellStore, unit) -> np.ndarray | None:
    if unit is None or not store.has(unit.key) or store.get(unit.key).get("status") != "ok":
        return None
    return store.arrays(unit.key).get("logits")


def _accuracy(store: CellStore, unit, qrec: dict, refs: dict, int_ref: np.ndarray | None,
              resamples: int) -> dict:
    if qrec.get("status") != "ok":
        return {"status": "failed", "reason": f"quantize: {qrec.get('reason')}"}
    if not store.has(unit.key):
        return {"status": "failed", "reason": "not run"}
    rec = store.get(unit.key)
    if rec.get("status") != "ok":
        return {"status": "failed", "reason": rec.get("reason")}
    logits = store.arrays(unit.key)["logits"]
    labels = refs.get("labels")
    float_logits, sim = refs["float"], refs.get("sim")
    scale = rec.get("output_scale")
    row = {"status": "ok", "samples": int(len(logits)), "artifact": rec["artifact"],
           "model_size_bytes": rec["model_size_bytes"], "runtime": rec.get("runtime"),
           "eval_seconds": rec.get("eval_seconds"), "quantize_seconds": qrec.get("seconds")}
    metrics = check.compare(logits, float_logits=float_logits, sim_logits=sim, labels=labels,
                            output_scale=scale)
    row.update({k: metrics.get(k) for k in ("accuracy", "accuracy_ci95", "top1_agreement",
                                            "sqnr_db", "max_lsb_vs_simulation")})
    if sim is not None and labels is not None:
        row["sim_accuracy"] = float((sim.argmax(1) == labels).mean())
    if int_ref is not None and scale:
        steps = np.rint(np.abs(logits.astype(np.float64) - int_ref) / scale)
        row["max_lsb_vs_int_reference"] = int(steps.max())
        row["bit_exact_fraction"] = float((steps == 0).mean())
    if labels is not None:
        row.update(_versus_float(labels, float_logits.argmax(1), logits.argmax(1), resamples,
                                 qrec.get("classes")))
    return row


def _versus_float(labels, float_pred, pred, resamples: int, classes) -> dict:
    """Paired statistics of this cell against the float model on the same samples."""
    f_ok, c_ok = float_pred == labels, pred == labels
    test = st.mcnemar(f_ok, c_ok)
    diff, low, high = st.paired_bootstrap(f_ok, c_ok, resamples=resamples)
    deltas = st.per_class_deltas(labels, float_pred, pred)
    worst = sorted(deltas.items(), key=lambda kv: kv[1])[:WORST_CLASSES]
    return {"float_accuracy": float(f_ok.mean()), "accuracy_delta": diff,
            "accuracy_delta_ci95": [low, high], "mcnemar_b": test.b, "mcnemar_c": test.c,
            "mcnemar_p": test.p_exact, "mcnemar_midp": test.p_mid,
            "verdict": st.verdict(test, diff),
            "worst_classes": [{"class": classes[c] if classes else c, "delta": d}
                              for c, d in worst if d < 0]}


def _latency(store: CellStore, unit, row: dict) -> dict:
    out = {"threads": unit.threads, "batch_size": unit.batch_size}
    if not store.has(unit.key):
        return {**out, "latency_status": "not run"}
    rec = store.get(unit.key)
    if rec.get("status") != "ok":
        return {**out, "latency_status": "failed", "latency_reason": rec.get("reason")}
    lat = rec["latency_ms"]
    eff = rec.get("efficiency")
    if eff:
        out.update(waterline_ms=eff["waterline_ms"], model_efficiency=eff["model_efficiency"],
                   attributed_share=eff["attributed_ms"] / eff["latency_ms"], efficiency=eff)
    return {**out, "latency_status": "ok", "latency_median_ms": lat["median"],
            "latency_p90_ms": lat["p90"], "latency_min_ms": lat["min"],
            "latency_runs": lat["runs"], "per_image_ms": rec["per_image_ms"],
            "node": rec.get("node"), "torch_threads": rec.get("torch_threads"),
            **{k: lat[k] for k in ("other_cpu_cores", "steal_cpu_cores") if k in lat}}


def _speedups(cells: list[dict]) -> None:
    """Quantized over float latency on the same model, target, threads and batch size."""
    floats = {(c["model"], c["target"], c.get("threads"), c.get("batch_size")):
              c.get("latency_median_ms") for c in cells if c["preset"] == "float"}
    for c in cells:
        base = floats.get((c["model"], c["target"], c.get("threads"), c.get("batch_size")))
        if c.get("latency_median_ms") and base:
            c["speedup_vs_float"] = base / c["latency_median_ms"]


def _pareto(cells: list[dict]) -> None:
    """Per model and batch size: the cells no other cell beats on both latency and accuracy
    (lower median latency, higher accuracy)."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        if c.get("latency_median_ms") is not None and c.get("accuracy") is not None:
            groups.setdefault((c["model"], c["batch_size"]), []).append(c)
    for group in groups.values():
        best = -1.0
        for c in sorted(group, key=lambda c: (c["latency_median_ms"], -c["accuracy"])):
            c["pareto"] = c["accuracy"] > best
            best = max(best, c["accuracy"])
