"""Benchmark: the accuracy-vs-latency audit of bench/specs/audit_cifar.yaml on the shared data.

Runs the audit (local process pool, or ``--executor ray`` on a local Ray cluster), then runs it
again in the same folder: the rerun must reuse every unit and recompute nothing. Writes
``bench/results/audit_cifar[_ray].json`` (every cell, wall times of both runs, which models were
skipped and why), the self-contained ``.html`` and a headless-Chromium screenshot ``.png``. With
``--executor ray`` it also compares every cell's accuracy figures with the local run's JSON.

    python bench/audit_cifar.py [--models resnet20-cifar10,resnet56-cifar10] [--executor ray]

A model whose weights are missing (MobileNetV2 must be trained first, ~1 h) is skipped and
named in the JSON. Skips (exit 0, with a message) without ../shared.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
SPEC = ROOT / "specs" / "audit_cifar.yaml"
SHARED = ROOT.parent.parent / "shared"
# the figures two runs of the same spec must share (latency and timings naturally differ)
ACCURACY_FIELDS = ("status", "accuracy", "accuracy_ci95", "sim_accuracy", "top1_agreement",
                   "sqnr_db", "max_lsb_vs_simulation", "max_lsb_vs_int_reference",
                   "bit_exact_fraction", "mcnemar_b", "mcnemar_c", "mcnemar_p",
                   "accuracy_delta", "accuracy_delta_ci95", "verdict")


def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset of the spec's models")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--work", type=Path, default=Path.home() / "convdeploy-bench",
                        help="where the audit folders (artifacts, cells) go")
    parser.add_argument("--eval-limit", type=int, help="smoke runs only: a subset of the split")
    parser.add_argument("--targets", help="comma-separated subset of the spec's targets")
    parser.add_argument("--note", help="a remark stored with the results (e.g. what else ran)")
    parser.add_argument("--tag", default="", help="suffix of the result files (a partial run)")
    parser.add_argument("--compare-only", action="store_true",
                        help="only (re)compare an earlier --executor ray result with the local "
                             "run's JSON")
    parser.add_argument("--retry-failed", action="store_true",
                        help="rerun units recorded as failed (after a fix)")
    parser.add_argument("--spec", type=Path, default=SPEC, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="audit_cifar", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (SHARED / "data" / "cifar10" / "test").is_dir():
        print(f"skipped: {SHARED} (the shared CIFAR-10 data) not found")
        return 0
    from convdeploy.audit import parse_spec, run_audit
    from convdeploy.audit.outputs import terminal_table
    from convdeploy.configfile import read_yaml
    from convdeploy.report import source_revision

    if args.compare_only:
        return _compare_again(args)
    tree = read_yaml(args.spec)
    wanted = args.models.split(",") if args.models else [m["name"] for m in tree["models"]]
    skipped, kept = {}, []
    for m in tree["models"]:
        weights = Path(m["weights"]).expanduser() if m.get("weights") else None
        if weights is not None and not weights.is_absolute():
            weights = args.spec.parent / weights
        if m["name"] not in wanted:
            skipped[m["name"]] = "not in --models"
        elif weights is not None and not weights.is_file():
            skipped[m["name"]] = f"weights {weights} not found (train or copy them first)"
        else:
            kept.append(m)
    if not kept:
        print(f"skipped: no model to run ({skipped})")
        return 0
    if args.targets:
        tree["targets"] = [t for t in tree["targets"] if t in args.targets.split(",")]
    spec = parse_spec({**tree, "models": kept}, args.spec.parent)
    models = spec.models
    if args.eval_limit:
        spec = replace(spec, data=replace(spec.data, eval_limit=args.eval_limit))
    suffix = "" if args.executor == "local" else f"_{args.executor}"
    suffix += f"_limit{args.eval_limit}" if args.eval_limit else ""
    suffix += f"_{args.tag}" if args.tag else ""
    local_name = f"{args.name}{suffix.replace('_' + args.executor, '')}.json"
    work = args.work / f"{args.name}{suffix.removesuffix('_' + args.tag) if args.tag else suffix}"
    t0 = time.perf_counter()
    audit = run_audit(spec, work, executor=args.executor, retry_failed=args.retry_failed)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    rerun = run_audit(spec, work, executor=args.executor, progress=False)
    second = time.perf_counter() - t0
    print(terminal_table(audit.cells))
    data = json.loads((work / "audit.json").read_text())
    data["benchmark"] = {
        "spec": os.path.relpath(args.spec.resolve(), ROOT.parent), "executor": args.executor,
        "commit": source_revision(ROOT),
        "models_run": [m.ref for m in models], "models_skipped": skipped,
        "targets_run": list(spec.targets), "note": args.note,
        "eval_limit": args.eval_limit, "wall_seconds": first,
        "units_computed": audit.computed, "units_reused_first_run": audit.reused,
        "rerun_wall_seconds": second, "rerun_units_computed": rerun.computed,
        "rerun_units_reused": rerun.reused}
    results = ROOT / "results"
    name = f"{args.name}{suffix}"
    if args.executor != "local":
        data["benchmark"]["accuracy_vs_local"] = _compare(results / local_name, data["cells"])
    (results / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    shutil.copyfile(work / "audit.html", results / f"{name}.html")
    _screenshot(results / f"{name}.html", results / f"{name}.png")
    print(json.dumps(data["benchmark"], indent=1))
    return 0


def _compare_again(args) -> int:
    suffix = f"_{args.executor}" + (f"_limit{args.eval_limit}" if args.eval_limit else "")
    mine = ROOT / "results" / f"{args.name}{suffix}.json"
    data = json.loads(mine.read_text())
    local = ROOT / "results" / f"{args.name}{suffix.replace('_' + args.executor, '')}.json"
    data["benchmark"]["accuracy_vs_local"] = _compare(local, data["cells"])
    mine.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data["benchmark"]["accuracy_vs_local"], indent=1))
    return 0


def _compare(local_json: Path, cells: list[dict]) -> dict:
    """Every cell's accuracy figures against the local executor's run of the same spec."""
    if not local_json.exists():
        return {"compared": False, "why": f"{local_json.name} not found"}
    local = json.loads(local_json.read_text())["cells"]

    def key(c):
        return (c["model"], c["scheme"], c["target"], c.get("threads"), c.get("batch_size"))

    mine = {key(c): c for c in cells}
    pairs = {(k[0], k[2]) for k in mine}  # the subset of models and targets this run covered
    theirs = {key(c): c for c in local if (c["model"], c["target"]) in pairs}
    differing = [list(k) for k in mine if k not in theirs or any(
        mine[k].get(f) != theirs[k].get(f) for f in ACCURACY_FIELDS)]
    return {"compared": True, "cells": len(mine), "local_cells": len(theirs),
            "differing": differing, "equal": not differing and len(mine) == len(theirs)}


def _screenshot(page: Path, png: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no screenshot: chromium is not installed (apt-get install chromium)")
        return
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1500,5200", f"--screenshot={png}", page.resolve().as_uri()],
                   capture_output=True, timeout=180)
    print(f"screenshot: {png}")


if __name__ == "__main__":
    sys.exit(main())
