"""Benchmark: ``convdeploy tune`` against the NNCF-style and INC-style searches, same run.

MobileNetV2 and ResNet-56 (CIFAR-10) on cpu-ort, 1 thread, batch 1, with accuracy budgets of
0.2, 0.5 and 1.0 points: the chosen configuration of each search, its measured latency and its
accuracy on the held-out evaluation split (5,000 of the 10,000 test images; the search sees
the other 5,000 and accepts a configuration when the 95% upper bound of its paired drop is
within the budget), beside all-int8 and all-float, from one calibration per model.
Writes ``bench/results/tune.json``.

    python bench/tune.py [--models ...] [--budgets 0.2,0.5,1.0] [--target cpu-ort]
    python bench/tune.py --target dsp-qnn-htp --out bench/results/tune_htp.json

The budgets of one model share one preparation (``tune_budgets``). On dsp-qnn-htp the choice is
8- or 16-bit activations per layer and the searches minimise an estimate (the emulator's
timings mean nothing); ``--eval-limit`` shortens its slow evaluation split. Run it alone on the
machine for cpu-ort (every latency is a measurement). Skips (exit 0) without the weights.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"
WEIGHTS = {"mobilenetv2-cifar10": Path.home() / ".cache/convdeploy/mobilenetv2-cifar10.pt",
           "resnet56-cifar10": SHARED / "models/resnet56-cifar10.th"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(WEIGHTS))
    parser.add_argument("--budgets", default="0.2,0.5,1.0")
    parser.add_argument("--target", default="cpu-ort")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-limit", type=int, help="test images used (tune split + the rest)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "tune.json")
    parser.add_argument("--resume", action="store_true",
                        help="keep the models already in --out (same revision, target and "
                             "budgets) and run only the others")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    missing = [str(WEIGHTS[m]) for m in models if not WEIGHTS[m].exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not found")
        return 0
    from convdeploy.config import DataConfig, DeployConfig, MeasureConfig, ModelSource
    from convdeploy.files import write_text_atomic
    from convdeploy.quant.scheme import W8A8
    from convdeploy.report import environment, source_revision
    from convdeploy.tuning.outputs import to_dict
    from convdeploy.tuning.run import TuneConfig, tune_budgets

    result = {"environment": environment(args.threads), "revision": source_revision(ROOT),
              "target": args.target, "eval_limit": args.eval_limit, "runs": []}
    budgets = tuple(float(b) for b in args.budgets.split(","))
    done = _resumable(args.out, result, budgets) if args.resume else {}
    t0 = time.perf_counter()
    earlier = sum(done.values())
    for model in models:
        t_model = time.perf_counter()
        if model in done:
            result["runs"] += [r for r in json.loads(args.out.read_text())["runs"]
                               if r["model"] == model]
            print(f"{model}: kept from {args.out}")
            continue
        cfg = DeployConfig(model=ModelSource(model, str(WEIGHTS[model])),
                           data=DataConfig(calib=str(SHARED / "data/cifar10/train-subset"),
                                           eval=str(SHARED / "data/cifar10/test"),
                                           calib_size=512, eval_limit=args.eval_limit),
                           scheme=W8A8, targets=(args.target,), progress=False,
                           measure=MeasureConfig(threads=args.threads, batch_size=1,
                                                 min_time_s=0.5))
        with tempfile.TemporaryDirectory(prefix="convdeploy-tune-") as tmp:
            found = tune_budgets(cfg, TuneConfig(args.target, budgets[0], rounds=5),
                                 Path(tmp), budgets)
        for budget, r in zip(budgets, found):
            run = to_dict(r, {"max_drop": budget, "min_speedup": None})
            result["runs"].append(run)
            print(f"{model} budget {budget}: " + "; ".join(
                f"{f['label']} {_cost(f)} {100 * f['accuracy']:.2f}% "
                f"({f['accuracy_delta_points']:+.2f})" for f in run["final"]) +
                f"; search {run['seconds']['total']:.0f} s", flush=True)
        # written after every model: a stopped run keeps what it finished (--resume)
        result["wall_seconds"] = earlier + time.perf_counter() - t0
        result["model_seconds"] = {**result.get("model_seconds", {}), **done,
                                   model: time.perf_counter() - t_model}
        write_text_atomic(args.out, json.dumps(result, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


def _resumable(out: Path, fresh: dict, budgets: tuple[float, ...]) -> dict[str, float]:
    """Models of an earlier run in ``out`` that this run may keep (same revision, target and
    budgets), with the seconds each took."""
    if not out.exists():
        return {}
    old = json.loads(out.read_text())
    keys = ("revision", "target", "eval_limit")
    if [old.get(k) for k in keys] != [fresh[k] for k in keys] or \
            old["environment"].get("cpu") != fresh["environment"].get("cpu"):
        print(f"--resume: {out} is another revision, target, --eval-limit or CPU; "
              "starting again")
        return {}
    kept = {}
    for model, seconds in old.get("model_seconds", {}).items():
        found = sorted(r["budget"]["max_drop"] for r in old["runs"] if r["model"] == model)
        if found == sorted(budgets):
            kept[model] = seconds
    return kept


def _cost(row: dict) -> str:
    if row.get("estimated_cost") is not None:
        return f"est. {row['estimated_cost']:.3f} of MACs at A16"
    return "-" if row["latency_ms"] is None else f"{row['latency_ms']:.3f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
