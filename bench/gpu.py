"""Benchmark: int8 ConvNets on an NVIDIA GPU with Triton kernels vs float through PyTorch CUDA.

ResNet-20, ResNet-56 (published checkpoints) and MobileNetV2 (the zoo's recipe weights), W8A8
with 512 calibration images, on the full shared CIFAR-10 test split:

- gpu-triton (implicit GEMM) and gpu-triton-im2win: every output code compared with the integer
  reference's (computed on the CPU, here, from the same QDQ file), accuracy, latency at batch 1
  and 256 with CUDA events (input resident), images/s;
- gpu-torch fp32 / fp16 / bf16 (cuDNN), channels-last (the target's layout) and NCHW:
  accuracy, latency, images/s, same clock;
- every layer, im2win vs implicit GEMM: time and the device memory each allocates, beside the
  memory explicit im2col would need (Lu et al. 2023's comparison, on these layers).

The GPU machine cannot read ../shared or reach a registry, so the work is split:

    python bench/gpu.py prepare --out .gpu     # here: QDQ files, int-reference codes, data
    python bench/gpu.py run --data .gpu --out DIR     # on the GPU machine: writes DIR/gpu.json
    cp DIR/gpu.json bench/results/ && python bench/render_docs.py

``run`` needs only torch (CUDA), triton, onnx and numpy there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"
MODELS = {"resnet20-cifar10": SHARED / "models/resnet20-cifar10.th",
          "resnet56-cifar10": SHARED / "models/resnet56-cifar10.th",
          "mobilenetv2-cifar10": Path.home() / ".cache/convdeploy/mobilenetv2-cifar10.pt"}
BATCH = 256


def prepare(out: Path, names: list[str], oracle_here: bool = True) -> int:
    """QDQ files, their int-reference output codes on the test split, weights and the data
    (models already prepared in ``out`` are kept)."""
    import shutil

    import torch

    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.onnx_export import export_onnx
    from convdeploy.models.datasets import load_images
    from convdeploy.models.loading import load_model
    from convdeploy.quant import W8A8, capture, quantize
    from convdeploy.report import source_revision

    out.mkdir(parents=True, exist_ok=True)
    old = out / "manifest.json"
    manifest = json.loads(old.read_text()) if old.exists() else {"models": {}}
    manifest.update(scheme="w8a8", calibration_images=512)
    for name in names:
        weights = MODELS[name]
        if not weights.exists():
            print(f"skipped {name}: {weights} not found")
            continue
        torch.manual_seed(0)
        loaded = load_model(name, str(weights))
        pre = loaded.preprocess_hint
        calib = load_images(SHARED / "data/cifar10/train-subset", pre, progress=False)
        test = load_images(SHARED / "data/cifar10/test", pre, progress=False)
        example = torch.from_numpy(test.normalized(pre, 0, 2))
        qm = quantize(capture(loaded.model, example), W8A8,
                      [torch.from_numpy(b) for b in calib.subset(512).batches(pre, 64)],
                      progress=False)
        onnx_path = out / f"{name}.onnx"
        export_onnx(qm, onnx_path, example=example, quantized=True)
        graph = lower_file(onnx_path)
        # the output codes (the final DEQUANTIZE's input)
        codes_name = graph.output if graph.output in graph.quant else graph.ops[-1].inputs[0]
        shutil.copy(weights, out / f"{name}{weights.suffix}")
        manifest["models"][name] = {"weights": f"{name}{weights.suffix}", "onnx": onnx_path.name,
                                    "output_codes": codes_name,
                                    "revision": source_revision(ROOT) or "unknown"}
        (out / f"{name}.int_reference.npy").unlink(missing_ok=True)
        if oracle_here:
            codes, seconds = _int_reference_codes(onnx_path, test, pre, codes_name)
            np.save(out / f"{name}.int_reference.npy", codes.astype(np.int16))
            manifest["models"][name].update(
                int_reference_seconds_cpu=seconds,
                int_reference_accuracy=float((codes.argmax(1) == test.labels).mean()))
        if not (out / "cifar10-test.npz").exists():
            np.savez_compressed(out / "cifar10-test.npz", x=test.images, y=test.labels)
            small = calib.subset(512)  # calibration data for a CLI export on the GPU machine
            np.savez_compressed(out / "cifar10-calib.npz", x=small.images, y=small.labels)
        print(name, json.dumps(manifest["models"][name]))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


def _latency(runnable, x: np.ndarray) -> dict:
    """CUDA-graph replay (one launch per forward, as a deployed runtime) and eager (one launch
    per op from Python), batch 1 and BATCH."""
    row = {}
    for mode, graph in (("", True), ("eager_", False)):
        try:
            one = runnable.device_times_ms({"input": x[:1]}, warmup=20, repeats=100, graph=graph)
            big = runnable.device_times_ms({"input": x[:BATCH]}, warmup=5, repeats=30,
                                           graph=graph)
        except Exception as exc:  # noqa: BLE001 - recorded; the other clock still runs
            row[f"{mode}error"] = f"{type(exc).__name__}: {exc}"
            continue
        row.update({f"{mode}batch1_median_ms": float(np.median(one)),
                    f"{mode}batch1_p90_ms": float(np.percentile(one, 90)),
                    f"{mode}batch{BATCH}_median_ms": float(np.median(big)),
                    f"{mode}batch{BATCH}_p90_ms": float(np.percentile(big, 90)),
                    f"{mode}images_per_s": BATCH / float(np.median(big)) * 1e3})
    return row


def _triton_model(name: str, info: dict, data: Path, test, pre, expected: np.ndarray) -> dict:
    from convdeploy.exporters.lowering import lower_file
    from convdeploy.targets.gpu_triton import TritonRunnable

    graph = lower_file(data / info["onnx"])
    rows, layers = {}, {}
    x_all = test.normalized(pre, 0, len(test))
    for algorithm in ("implicit-gemm", "im2win"):
        runnable = TritonRunnable(graph, algorithm)
        t0 = time.perf_counter()
        codes = np.concatenate([runnable.codes(x_all[i:i + BATCH], info["output_codes"])
                                [info["output_codes"]]
                                for i in range(0, len(x_all), BATCH)])
        equal = codes == expected
        rows[algorithm] = {
            "outputs": int(equal.size), "outputs_equal": int(equal.sum()),
            "images_all_equal": int(equal.all(1).sum()), "images": int(len(codes)),
            "max_code_difference": int(np.abs(codes.astype(np.int64) - expected).max()),
            "accuracy": float((codes.argmax(1) == test.labels).mean()),
            "full_split_seconds": time.perf_counter() - t0, **_latency(runnable, x_all)}
        try:
            layers[algorithm] = runnable.layer_times(x_all[:BATCH], repeats=20)
        except Exception as exc:  # noqa: BLE001
            rows[algorithm]["layers_error"] = f"{type(exc).__name__}: {exc}"
        print(name, algorithm, json.dumps(rows[algorithm]), flush=True)
    return {"triton": rows,
            "layers": _layer_table(graph, layers) if len(layers) == 2 else []}


def _layer_table(graph, layers: dict) -> list[dict]:
    """Dense convolutions, im2win vs implicit GEMM, with im2col's buffer for comparison."""
    from convdeploy.exporters.lowering import infer_shapes

    shapes = infer_shapes(graph, BATCH)
    by_name = {a: {r["op"]: r for r in rows} for a, rows in layers.items()}
    table = []
    for op in graph.ops:
        if op.kind.name != "CONV" or op.attrs.get("groups", 1) != 1:
            continue
        n, c, h, w = shapes[op.inputs[0]]
        _, co, ho, wo = shapes[op.output]
        kh, kw = op.weight.shape[2:]
        gemm, win = by_name["implicit-gemm"][op.name], by_name["im2win"][op.name]
        table.append({"layer": op.name, "input": [c, h, w], "output": [co, ho, wo],
                      "kernel": [int(kh), int(kw)], "stride": list(op.attrs["strides"]),
                      "gmacs": n * ho * wo * co * c * kh * kw / 1e9,
                      "implicit_gemm_ms": gemm["median_ms"], "im2win_ms": win["median_ms"],
                      "implicit_gemm_workspace_bytes": gemm["workspace_bytes"],
                      "im2win_workspace_bytes": win["workspace_bytes"],
                      "im2col_bytes": n * ho * wo * c * kh * kw,
                      "im2win_window_bytes": n * ho * (w + op.attrs["pads"][1]
                                                       + op.attrs["pads"][3]) * kh * c,
                      "input_bytes": n * c * h * w})
    return table


def _torch_model(name: str, info: dict, data: Path, test, pre) -> dict:
    import torch

    from convdeploy.models.loading import load_model
    from convdeploy.targets.gpu_torch import TorchCudaRunnable

    torch.backends.cudnn.benchmark = True
    x_all = test.normalized(pre, 0, len(test))
    rows = {}
    for layout, channels_last in (("", True), (" NCHW", False)):
        model = load_model(name, str(data / info["weights"])).model.cuda().eval()
        for precision in (None, "float16", "bfloat16"):
            runnable = TorchCudaRunnable(model, precision, "output",
                                         channels_last=channels_last)
            logits = np.concatenate([runnable({"input": x_all[i:i + BATCH]})["output"]
                                     for i in range(0, len(x_all), BATCH)])
            label = (precision or "float32") + layout
            rows[label] = {"accuracy": float((logits.argmax(1) == test.labels).mean()),
                           **_latency(runnable, x_all)}
            print(name, label, json.dumps(rows[label]), flush=True)
    return rows


def _int_reference_codes(onnx_path: Path, test, pre,
                         codes_name: str) -> tuple[np.ndarray, float]:
    """The integer reference's output codes on the whole split (numpy/torch on the CPU)."""
    import torch

    from convdeploy.exporters.lowering import lower_file
    from convdeploy.targets.int_reference import IntegerRunnable

    torch.set_num_threads(os.cpu_count() or 1)
    runnable = IntegerRunnable(lower_file(onnx_path))
    t0 = time.perf_counter()
    codes = np.concatenate([runnable.codes(b)[codes_name] for b in test.batches(pre, 100)])
    return codes.astype(np.int64), time.perf_counter() - t0


def run(data: Path, out: Path) -> int:
    import torch
    import triton

    from convdeploy.models.datasets import load_images
    from convdeploy.models.loading import load_model

    manifest = json.loads((data / "manifest.json").read_text())
    revisions = sorted({m.get("revision", manifest.get("revision", "unknown"))
                        for m in manifest["models"].values()})
    result = {"revision": ", ".join(revisions), "scheme": manifest["scheme"],
              "device": torch.cuda.get_device_name(), "batch": BATCH,
              "versions": {"torch": torch.__version__, "triton": triton.__version__,
                           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                           "python": platform.python_version()},
              "clock": "CUDA events around a CUDA-graph replay of the forward pass, input "
                       "resident on the GPU (eager: each op launched from Python)",
              "models": {}}
    for name, info in manifest["models"].items():
        pre = load_model(name, str(data / info["weights"])).preprocess_hint
        test = load_images(data / "cifar10-test.npz", pre, progress=False)
        entry = {}
        if (data / f"{name}.int_reference.npy").exists():
            expected = np.load(data / f"{name}.int_reference.npy").astype(np.int64)
            entry.update(int_reference_accuracy=info["int_reference_accuracy"],
                         int_reference_computed_on="the CPU machine that prepared the data")
        else:  # prepared with --int-reference-on-gpu-machine: the oracle runs there, on its CPU
            expected, seconds = _int_reference_codes(data / info["onnx"], test, pre,
                                                     info["output_codes"])
            entry.update(int_reference_accuracy=float((expected.argmax(1) == test.labels).mean()),
                         int_reference_computed_on=f"the GPU machine's CPU ({os.cpu_count()} "
                                                   f"cores, torch {torch.__version__})",
                         int_reference_seconds=seconds)
        try:
            entry.update(_triton_model(name, info, data, test, pre, expected))
        except Exception as exc:  # noqa: BLE001 - recorded, the other models still run
            entry["triton_error"] = f"{type(exc).__name__}: {exc}"
        try:
            entry["torch"] = _torch_model(name, info, data, test, pre)
        except Exception as exc:  # noqa: BLE001
            entry["torch_error"] = f"{type(exc).__name__}: {exc}"
        result["models"][name] = entry
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, default=ROOT.parent / ".gpu")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--int-reference-on-gpu-machine", action="store_true",
                   help="leave the integer reference's codes to `run` (on that machine's CPU)")
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=ROOT.parent / ".gpu")
    r.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    if args.command == "prepare":
        if not SHARED.exists():
            print(f"skipped: {SHARED} not found")
            return 0
        return prepare(args.out, args.models, not args.int_reference_on_gpu_machine)
    return run(args.data, args.out)


if __name__ == "__main__":
    sys.exit(main())
