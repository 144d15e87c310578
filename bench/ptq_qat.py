"""Benchmark: PTQ methods and QAT for W8A8 / W4A8 on ResNet-20 and MobileNetV2 (shared CIFAR-10),
with onnxruntime's ``quantize_static`` (W8A8 and W4A8, QDQ, per-channel, MinMax) on the same float
ONNX and the same 512 calibration images, in the same run. Every row: accuracy of the fake-quant
simulation and of the exported QDQ model on cpu-ort over the full test split, and the seconds
the method took. Writes bench/results/ptq_qat_<model>.json.

    python bench/ptq_qat.py --model resnet20 [--qat-epochs 12]
    python bench/ptq_qat.py --model mobilenetv2   # needs the recipe's weights (see models/)

Skips (exit 0, with a message) when ../shared or the weights are absent.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")

from convdeploy import check  # noqa: E402
from convdeploy.exporters.artifact import Artifact, ArtifactFormat  # noqa: E402
from convdeploy.exporters.onnx_export import OnnxExporter  # noqa: E402
from convdeploy.files import write_text_atomic  # noqa: E402
from convdeploy.models.augment import random_crop_flip  # noqa: E402
from convdeploy.models.datasets import load_images  # noqa: E402
from convdeploy.models.loading import load_model  # noqa: E402
from convdeploy.models.zoo import CIFAR_PREPROCESS as PRE  # noqa: E402
from convdeploy.quant.config import PTQConfig, QATConfig  # noqa: E402
from convdeploy.quant.graph import capture  # noqa: E402
from convdeploy.quant.ptq import apply_ptq, prepare  # noqa: E402
from convdeploy.quant.qat import finetune  # noqa: E402
from convdeploy.quant.layers import weighted_layers  # noqa: E402
from convdeploy.quant.scheme import PRESETS, W4A8, TensorQuant  # noqa: E402
from convdeploy.quant.sensitivity import channel_range_spread  # noqa: E402
from convdeploy.report import environment  # noqa: E402
from convdeploy.targets import registry  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from cpu_int8_resnet20 import ort_quantize_static  # noqa: E402

# (row label, scheme preset, PTQ methods, QAT after PTQ)
ROWS = [
    ("W8A8 per-tensor", "w8a8-per-tensor", (), False),
    ("W8A8 per-tensor CLE", "w8a8-per-tensor", ("cle",), False),
    ("W8A8 per-channel", "w8a8", (), False),
    ("W4A8 MinMax", "w4a8", (), False),
    ("W4A8 per-tensor MinMax", "w4a8-per-tensor", (), False),
    ("W4A8 CLE+bias correction", "w4a8", ("cle", "bias-correction"), False),
    ("W4A8 AdaRound", "w4a8", ("adaround",), False),
    ("W4A8 CLE+AdaRound", "w4a8", ("cle", "adaround"), False),
    ("W4A8 QAT (from MinMax; the qat default)", "w4a8", (), True),
    ("W4A8 QAT (from AdaRound)", "w4a8", ("adaround",), True),
    # The fair reference for QAT: the float model fine-tuned by the same recipe on the same
    # images (fine-tuning on the JPEG train-subset also adapts the model to JPEG inputs).
    ("Float fine-tune (QAT recipe)", "w8a8", (), "float"),
]


# Per-tensor 4-bit weights are no preset (no target wants them): here they show where the
# per-channel grid starts to matter on a model whose channel ranges are close together.
SCHEMES = {**PRESETS, "w4a8-per-tensor": W4A8.with_(
    weights=TensorQuant(bits=4, symmetric=True, per_channel=False))}


def range_spread(qm) -> dict:
    """Channel range spread (max / median per-channel max|w|) of the folded weights, for the
    depthwise and the other layers: what decides whether per-tensor weights cost accuracy."""
    spread: dict[str, list[float]] = {"depthwise": [], "other": []}
    for layer in weighted_layers(qm.graph):
        w = layer.weight(qm.graph)
        kind = "depthwise" if layer.groups > 1 and layer.groups == w.shape[0] else "other"
        spread[kind].append(channel_range_spread(w))
    return {k: {"layers": len(v), "median": float(np.median(v)), "max": float(np.max(v))}
            for k, v in spread.items() if v}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def simulate(qm, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([qm.simulate(x[i:i + 500]) for i in range(0, len(x), 500)]).numpy()


def run_onnx(path: Path, eval_set, work: Path) -> np.ndarray:
    art = Artifact(name=path.stem, format=ArtifactFormat.ONNX, precision="q", path=path)
    runnable = registry.get("cpu-ort").compile(art, work)
    return check.run_dataset(runnable, eval_set, PRE, batch_size=100, input_name="input",
                             output_name="output", progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet20", "mobilenetv2"], default="resnet20")
    parser.add_argument("--shared", type=Path, default=ROOT.parent.parent / "shared")
    parser.add_argument("--weights", type=Path, help="MobileNetV2 weights (default: the cache)")
    parser.add_argument("--qat-epochs", type=int, default=QATConfig.epochs)
    parser.add_argument("--qat-lr", type=float, default=QATConfig.lr)
    parser.add_argument("--adaround-iters", type=int, default=1000)
    parser.add_argument("--rows", help="comma-separated row numbers to run (default: all)")
    args = parser.parse_args(argv)
    data = args.shared / "data" / "cifar10"
    if args.model == "resnet20":
        name, weights = "resnet20-cifar10", args.shared / "models" / "resnet20-cifar10.th"
    else:
        from convdeploy.models.mobilenetv2_cifar import WEIGHTS

        name, weights = "mobilenetv2-cifar10", args.weights or WEIGHTS
    if not weights.is_file() or not (data / "test").is_dir():
        print(f"skipped: needs {weights} and {data}/test; nothing measured")
        return 0
    torch.manual_seed(0)
    loaded = load_model(name, str(weights))
    train = load_images(data / "train-subset", PRE, progress=False)
    calib = train.subset(512, seed=0)
    test = load_images(data / "test", PRE, progress=False)
    x = torch.from_numpy(test.normalized(PRE))
    batches = [torch.from_numpy(b) for b in calib.batches(PRE, 64)]
    gm = capture(loaded.model, x[:2])
    work = Path(tempfile.mkdtemp(prefix="bench-ptq-"))
    float_qm = prepare(gm, PRESETS["w8a8"])
    float_art = OnnxExporter(quantized=False, example=x[:2]).export(float_qm, work)
    with torch.no_grad():
        float_logits = torch.cat([float_qm.float(x[i:i + 500])
                                  for i in range(0, len(x), 500)]).numpy()
    float_acc = accuracy(float_logits, test.labels)
    spread = range_spread(float_qm)
    rows = [{"row": "float", "simulation_accuracy": float_acc,
             "cpu_ort_accuracy": accuracy(run_onnx(float_art.path, test, work), test.labels),
             "seconds": 0.0, "size_bytes": float_art.size_bytes}]
    print(f"{name} float {100 * float_acc:.2f}%; channel range spread {spread}", flush=True)
    chosen = {int(i) for i in args.rows.split(",")} if args.rows else set(range(len(ROWS)))
    ptq_done: dict[tuple, object] = {}  # QAT starts from the PTQ row's model, not a re-run
    for i, (label, preset, methods, qat) in enumerate(ROWS):
        if i not in chosen:
            continue
        t0 = time.perf_counter()
        cached = (preset, methods) in ptq_done
        if cached:
            qm = copy.deepcopy(ptq_done[(preset, methods)])
        else:
            qm = prepare(gm, SCHEMES[preset])
            apply_ptq(qm, batches, PTQConfig(methods=methods,
                                             adaround_iters=args.adaround_iters), progress=False)
            ptq_done[(preset, methods)] = copy.deepcopy(qm)
        row = {"row": label, "scheme": qm.label, "ptq_seconds": dict(qm.timings_s),
               "ptq_details": {k: v for k, v in qm.ptq_details.items() if k != "adaround"}}
        if "adaround" in qm.ptq_details:
            row["adaround_output_mse_gain"] = qm.ptq_details["adaround"][
                "output_mse_ratio_geomean"]
        if qat:
            t1 = time.perf_counter()
            hx = torch.from_numpy(train.normalized(PRE))
            finetune(qm, hx, torch.from_numpy(train.labels), QATConfig(
                epochs=args.qat_epochs, lr=args.qat_lr, learn_ranges=qat != "float"),
                augment=random_crop_flip, progress=False, quantized=qat != "float")
            row["qat_seconds"] = time.perf_counter() - t1
            row["qat"] = {"epochs": args.qat_epochs, "lr": args.qat_lr,
                          "train_images": len(train)}
        row["seconds"] = time.perf_counter() - t0 + (sum(qm.timings_s.values()) if cached else 0)
        if qat == "float":  # the float graph, fine-tuned: run and export it as float
            with torch.no_grad():
                logits = torch.cat([qm.float(x[i:i + 500]) for i in range(0, len(x), 500)])
            row.update(scheme="float+finetune", simulation_accuracy=accuracy(logits.numpy(),
                                                                              test.labels))
            (work / "ft").mkdir(exist_ok=True)  # keep the original float file for ORT's rows
            art = OnnxExporter(quantized=False, example=x[:2]).export(qm, work / "ft")
            row["cpu_ort_accuracy"] = accuracy(run_onnx(art.path, test, work), test.labels)
            row["size_bytes"] = art.size_bytes
            rows.append(row)
            _write(args, name, float_acc, spread, test, calib, rows)
            print(f"{label:34} float {100 * row['simulation_accuracy']:.2f}%", flush=True)
            continue
        sim_logits = simulate(qm, x)
        row["simulation_accuracy"] = accuracy(sim_logits, test.labels)
        # the quantization error itself, not only its effect on top-1: logits SQNR vs float
        row["simulation_sqnr_db"] = check.sqnr_db(float_logits, sim_logits)
        art = OnnxExporter(quantized=True, example=x[:2]).export(qm, work)
        row["cpu_ort_accuracy"] = accuracy(run_onnx(art.path, test, work), test.labels)
        row["size_bytes"] = art.size_bytes
        rows.append(row)
        _write(args, name, float_acc, spread, test, calib, rows)  # partial results survive a stop
        print(f"{label:34} sim {100 * row['simulation_accuracy']:.2f}% "
              f"({row['simulation_sqnr_db']:.1f} dB)  cpu-ort "
              f"{100 * row['cpu_ort_accuracy']:.2f}%  {row['seconds']:.0f} s", flush=True)
    calib_np = calib.normalized(PRE)
    for bits in (8, 4):
        out = work / f"ort_static_w{bits}.onnx"
        seconds = ort_quantize_static(float_art.path, calib_np, out, bits)
        acc = accuracy(run_onnx(out, test, work), test.labels)
        rows.append({"row": f"onnxruntime quantize_static W{bits}A8", "cpu_ort_accuracy": acc,
                     "seconds": seconds, "size_bytes": out.stat().st_size})
        print(f"{'ORT quantize_static W%dA8' % bits:34} cpu-ort {100 * acc:.2f}%", flush=True)
    print(f"wrote {_write(args, name, float_acc, spread, test, calib, rows, complete=True)}")
    return 0


def _write(args, name, float_acc, spread, test, calib, rows, complete: bool = False) -> Path:
    result = {"benchmark": "ptq_qat", "model": name, "float_accuracy": float_acc,
              "channel_range_spread": spread, "complete": complete, "test_images": len(test), "calibration_images": len(calib),
              "adaround_iters": args.adaround_iters,
              "environment": environment(torch.get_num_threads()), "rows": rows}
    out = ROOT / "results" / f"ptq_qat_{args.model}.json"
    if args.rows:
        out = out.with_name(out.stem + "_partial.json")
    write_text_atomic(out, json.dumps(result, indent=2))
    return out


if __name__ == "__main__":
    sys.exit(main())
