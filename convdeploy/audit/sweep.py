"""``run_audit(spec, out) -> Audit``: plan the units, reuse what is finished, run the rest in
order (quantize -> accuracy in parallel -> latency one at a time), then analyse and write.

Order and sharing: quantization runs once per (model, scheme) and every target's cells use its
files; accuracy runs once per (model, scheme, target) and is shared by every thread count and
batch size; latency cells run last, one at a time, with no other unit of the sweep running.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from convdeploy.errors import ConvdeployError

from . import units as U
from .executors import Outcome, make_executor
from .progress import TimeLeft, progress_bar, unit_seconds
from .spec import AuditSpec, SchemeEntry, validate
from .store import CellStore, data_fingerprint, environment_fingerprint, model_fingerprint

INT_REFERENCE = "int-reference"


@dataclass
class Plan:
    quantize: list[U.QuantizeUnit]
    accuracy: list[U.AccuracyUnit]
    latency: list[U.LatencyUnit]
    unsupported: dict[tuple[str, str], str]  # (scheme label, target) -> reason
    no_latency: dict[str, str]  # target -> why its latency is not measured
    fingerprints: dict = field(default_factory=dict)

    @property
    def all_units(self) -> list:
        return [*self.quantize, *self.accuracy, *self.latency]


def plan(spec: AuditSpec) -> Plan:
    """Every unit of the sweep, keyed by its configuration and fingerprints."""
    from convdeploy.exporters.artifact import ArtifactFormat
    from convdeploy.targets import registry

    unsupported = {(e.label, t): r for e, t, r in validate(spec)}
    targets = {name: registry.get(name) for name in (*spec.targets, INT_REFERENCE)}
    tflite = any(ArtifactFormat.TFLITE in targets[t].formats for t in spec.targets)
    env = environment_fingerprint()
    data_fp = data_fingerprint(spec.data)
    fingerprints = {"environment": env, "data": data_fp, "models": {}}
    quantize, accuracy, latency = [], [], []
    for model in spec.models:
        model_fp = model_fingerprint(model)
        fingerprints["models"][model.ref] = model_fp
        fp = U._digest([model_fp, data_fp, env])
        for entry in spec.schemes:
            q = U.QuantizeUnit(model, entry, spec.data, tflite, spec.eval_batch_size, fp)
            quantize.append(q)
            names = list(spec.targets)
            if entry.scheme is not None and INT_REFERENCE not in names:
                names.append(INT_REFERENCE)  # the oracle of every quantized cell's LSB distance
            for name in names:
                if (entry.label, name) in unsupported:
                    continue
                accuracy.append(U.AccuracyUnit(q, name, spec.eval_batch_size))
                if getattr(targets[name], "latency_not_meaningful", None):
                    continue
                profile = spec.profile and getattr(targets[name], "profiles", False)
                for threads in spec.threads:
                    for batch in spec.batch_sizes:
                        latency.append(U.LatencyUnit(q, name, threads, batch, spec.warmup,
                                                     spec.repeats, spec.min_time_s, profile))
    no_latency = {n: t.latency_not_meaningful for n, t in targets.items()
                  if getattr(t, "latency_not_meaningful", None)}
    return Plan(quantize, accuracy, latency, unsupported, no_latency, fingerprints)


@dataclass
class Audit:
    """What a sweep produced: the analysed cells and how the run went."""

    spec: AuditSpec
    out: Path
    cells: list[dict]
    reused: dict[str, int]
    computed: dict[str, int]
    failed: int
    wall_seconds: float
    executor: str
    fingerprints: dict


def run_audit(spec: AuditSpec, out: str | Path, *, executor: str = "local",
              address: str | None = None, progress: bool = True,
              retry_failed: bool = False) -> Audit:
    """Run (or resume) the sweep into ``out`` and write audit.json, cells.csv, audit.md and
    audit.html there."""
    from .analysis import analyse
    from .outputs import write_outputs

    t0 = time.perf_counter()
    the_plan = plan(spec)  # validation and fingerprints: before any work
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConvdeployError(f"--out {out} is a file", fix="choose a directory for --out")
    store = CellStore(out)
    artifacts_dir = str(out / "artifacts")
    done = store.keys()
    if retry_failed:
        done = {k for k in done if store.get(k).get("status") == "ok"}
    reused = {kind: sum(u.key in done for u in units) for kind, units in
              (("quantize", the_plan.quantize), ("accuracy", the_plan.accuracy),
               ("latency", the_plan.latency))}
    todo = [u for u in the_plan.all_units if u.key not in done]
    total = len(the_plan.all_units)
    if progress:
        print(f"audit: {total} units ({len(the_plan.quantize)} quantize, "
              f"{len(the_plan.accuracy)} accuracy, {len(the_plan.latency)} latency); reused "
              f"{total - len(todo)} finished, {len(todo)} to run; executor {executor}")
    computed = {"quantize": 0, "accuracy": 0, "latency": 0}
    failed = 0
    eta = TimeLeft(todo, spec.workers)
    for unit in the_plan.all_units:
        if unit.key in done:
            eta.finished(unit, unit_seconds(store.get(unit.key)))
    ex = make_executor(executor, spec.workers, address) if todo else None
    bar = progress_bar(len(todo), progress)
    bar.set_postfix_str(eta.text())
    try:
        for outcome in _execute(ex, todo, store, artifacts_dir):
            record = {"kind": outcome.unit.kind, "unit": outcome.unit.describe()}
            if outcome.error is not None:
                record.update(status="failed", reason=outcome.error)
            else:
                record.update({"status": "ok", **outcome.result})
            if record["status"] != "ok":
                failed += 1
            store.put(outcome.unit.key, record)
            computed[outcome.unit.kind] += 1
            eta.finished(outcome.unit, unit_seconds(record))
            bar.set_postfix_str("; ".join(t for t in (outcome.unit.describe()[:60], eta.text())
                                          if t))
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        raise ConvdeployError(
            f"audit interrupted: {sum(computed.values())} units finished in this run are kept "
            f"in {out / 'cells'}", fix="run the same command again to resume")
    finally:
        bar.close()
        if ex is not None:
            ex.close()
    cells = analyse(spec, the_plan, store)
    audit = Audit(spec, out, cells, reused, computed, failed, time.perf_counter() - t0,
                  executor, the_plan.fingerprints)
    write_outputs(audit)
    return audit


def _execute(ex, todo: list, store: CellStore, artifacts_dir: str):
    """Phases in dependency order; a unit whose source failed is recorded as failed too."""
    by_kind = {k: [u for u in todo if u.kind == k] for k in ("quantize", "accuracy", "latency")}
    yield from ex.parallel([(u, U.run_quantize, (u, artifacts_dir)) for u in
                            by_kind["quantize"]]) if by_kind["quantize"] else ()
    for phase, fn, runner in (("accuracy", U.run_accuracy, "parallel"),
                              ("latency", U.run_latency, "serial")):
        jobs = []
        for unit in by_kind[phase]:
            source = store.get(unit.source.key)
            blocked = source.get("status") != "ok"
            if phase == "latency" and not blocked:
                acc = U.AccuracyUnit(unit.source, unit.target, unit.source.eval_batch_size)
                record = store.get(acc.key) if store.has(acc.key) else {"status": "failed"}
                blocked = record.get("status") != "ok"
                source = source if not blocked else record
            if blocked:
                yield Outcome(unit, None, f"not run: {source.get('reason', 'its source failed')}")
                continue
            jobs.append((unit, fn, (unit, source, artifacts_dir)))
        if jobs:
            yield from getattr(ex, runner)(jobs)


def scheme_of(label: str, spec: AuditSpec) -> SchemeEntry:
    return next(e for e in spec.schemes if e.label == label)
