"""Render the benchmark tables of docs/benchmarks.md and the README's results summary from
bench/results/*.json. Numbers are never typed by hand: change a result, rerun this script.

    python bench/render_docs.py          # rewrite docs/benchmarks.md and the README block
    python bench/render_docs.py --check  # exit 1 if either is stale (CI-friendly)

The README block sits between ``<!-- results:begin -->`` and ``<!-- results:end -->``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
REPO = ROOT.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
sys.path.insert(0, str(ROOT))  # the sibling render modules, also when imported from tests

from render_tables import (_AUDIT_COLUMNS, _kb, _load, _ms, _num, _pct,  # noqa: E402
                           _reuse_text, _scheme_checks, _spec_audit, _table, machine,
                           sentence)
from render_efficiency import (efficiency_section, efficiency_summary,  # noqa: E402
                               tune_section, tune_summary)
from render_video import video_checks, video_demo_summary, video_section  # noqa: E402

from convdeploy.audit.outputs import disturbed_note  # noqa: E402
from convdeploy.latency import disturbed  # noqa: E402


def audit_section(data: dict, title: str) -> list[str]:
    bench = data.get("benchmark", {})
    env = data["fingerprints"]["environment"]
    cells = data["cells"]
    lines = [f"### {title}", "",
             f"Spec `{bench.get('spec')}`, executor `{bench.get('executor')}`, models "
             f"{', '.join(bench.get('models_run', []))}"
             + (f" (eval limit {bench['eval_limit']})" if bench.get("eval_limit") else
                " (full 10,000-image test split)") + f". Machine: {machine(env)}.", ""]
    for model, why in bench.get("models_skipped", {}).items():
        lines.append(f"- **{model} not run**: {why}.")
    if bench.get("targets_run"):
        lines.append(f"- Targets: {', '.join(bench['targets_run'])}.")
    if bench.get("note"):
        lines.append(f"- Note: {sentence(bench['note'])}")
    comp = bench.get("units_computed", {})
    lines += [f"- This run {_reuse_text(bench)}; units computed: {comp.get('quantize')} "
              f"quantize, {comp.get('accuracy')} accuracy, {comp.get('latency')} latency.", ""]
    if "accuracy_vs_local" in bench:
        cmp = bench["accuracy_vs_local"]
        lines += ["- Against the local executor's run: "
                  + ("every cell's accuracy figures are equal "
                     f"({cmp['cells']} cells)." if cmp.get("equal") else
                     f"{len(cmp.get('differing', []))} cells differ: {cmp.get('differing')}"
                     if cmp.get("compared") else f"not compared ({cmp.get('why')})."), ""]
    for model in dict.fromkeys(c["model"] for c in cells):
        lines += [f"**{model}**, batch 1: Pareto-optimal cells first, then the fastest cell of "
                  "every (scheme, target).", ""]
        lines += _table(["scheme", "target", "threads", "accuracy", "vs float (95% CI)",
                         "McNemar p", "verdict", "max LSB vs int-ref", "latency ms",
                         "speed-up vs float", "Pareto"], _audit_rows(cells, model))
        lines.append("")
        lines += _not_run(cells, model)
    note = disturbed_note(cells)
    return lines + ([note, ""] if note else [])


def _audit_rows(cells: list[dict], model: str) -> list[list[str]]:
    mine = [c for c in cells if c["model"] == model and c.get("status") == "ok"]
    best: dict[tuple, dict] = {}
    for c in mine:
        if c.get("batch_size") not in (1, None):
            continue
        key = (c["scheme"], c["target"])
        lat = c.get("latency_median_ms")
        if key not in best or (lat is not None and lat < (best[key].get("latency_median_ms")
                                                           or float("inf"))):
            best[key] = c
    rows = sorted(best.values(), key=lambda c: (not c.get("pareto"),
                                                c.get("latency_median_ms") or float("inf")))
    out = []
    for c in rows:
        d, ci = c.get("accuracy_delta"), c.get("accuracy_delta_ci95")
        lsb = c.get("max_lsb_vs_int_reference")
        out.append([c["scheme"], c["target"], c.get("threads") or "-", _pct(c.get("accuracy")),
                    "-" if d is None else f"{100 * d:+.2f} ({100 * ci[0]:+.2f}, "
                                          f"{100 * ci[1]:+.2f})",
                    "-" if c.get("mcnemar_p") is None else f"{c['mcnemar_p']:.2g}",
                    c.get("verdict", "-"),
                    "-" if lsb is None else f"{lsb} ({100 * c['bit_exact_fraction']:.1f}% exact)",
                    _ms(c.get("latency_median_ms")) + ("*" if disturbed(c) else "")
                    if c.get("latency_median_ms") else
                    "not measured", "-" if not c.get("speedup_vs_float") else
                    f"{c['speedup_vs_float']:.2f}x", "**yes**" if c.get("pareto") else ""])
    return out


def _not_run(cells: list[dict], model: str) -> list[str]:
    seen, lines = set(), []
    for c in cells:
        if c["model"] != model or c.get("status") == "ok":
            continue
        key = (c["scheme"], c["target"])
        if key not in seen:
            seen.add(key)
            lines.append(f"- {c['scheme']} on {c['target']}: {c.get('status')}: "
                         f"{(c.get('reason') or '').strip()[:200]}")
    return lines + [""] if lines else []


def audit_summary(data: dict) -> list[str]:
    """The README's lines: per model, the Pareto front at batch 1."""
    lines = []
    for model in dict.fromkeys(c["model"] for c in data["cells"]):
        front = sorted((c for c in data["cells"] if c["model"] == model and c.get("pareto")
                        and c.get("batch_size") == 1), key=lambda c: c["latency_median_ms"])
        steps = "; ".join(f"{c['target']} {c['scheme']} {c['threads']}t: "
                          f"{_pct(c['accuracy'])} at {_ms(c['latency_median_ms'])} ms"
                          for c in front)
        lines.append(f"- **{model}** (batch 1, Pareto front): {steps}.")
    return lines


# ---------------------------------------------------------------- the other benchmarks


def int_reference_section() -> list[str]:
    before, after = _load("int_reference_speed_before.json"), _load(
        "int_reference_speed_after.json")
    if not (before and after):
        return []
    ratio = before["int_reference_seconds"] / after["int_reference_seconds"]
    same = before["logits_sha256"] == after["logits_sha256"]
    return ["### Integer reference speed (`bench/int_reference_speed.py`)", "",
            f"ResNet-20 W8A8, {after['samples']:,} test images, both revisions measured on the "
            f"same machine, with nothing else running: {machine(after['environment'])}. "
            "`+changes`: uncommitted edits outside the measured kernels.", "",
            *_table(["revision", "int-reference seconds", "accuracy", "logits differing from "
                     "LiteRT reference kernels"],
                    [[r["revision"] + (" (before)" if r is before else " (after)"),
                      f"{r['int_reference_seconds']:.1f}", _pct(r["accuracy"]),
                      r["logits_differing_from_litert_reference"]] for r in (before, after)]),
            "", f"Speed-up **{ratio:.1f}x**; the integer logits of both revisions are "
                f"{'bit-identical (same SHA-256)' if same else 'DIFFERENT'}.", ""]


def ptq_qat_section(name: str, title: str) -> list[str]:
    data = _load(name)
    if not data:
        return []
    rows = [[r["row"], _pct(r.get("simulation_accuracy")), _pct(r.get("cpu_ort_accuracy")),
             "-" if not r.get("seconds") else f"{r['seconds']:.1f} s", _kb(r.get("size_bytes"))]
            for r in data["rows"]]
    return [f"### {title} (`bench/ptq_qat.py`, `{name}`)", "",
            f"{data['test_images']:,} test images, {data['calibration_images']} calibration "
            f"images; float {_pct(data['float_accuracy'])}; run complete: {data['complete']}. "
            f"Machine: {machine(data['environment'])}.", "",
            *_table(["row", "simulation", "cpu-ort", "time", "file"], rows), ""]


def mobile_dsp_section(name: str, title: str) -> list[str]:
    data = _load(name)
    if not data:
        return []
    rows = [[r["target"], r["scheme"], _pct(r.get("accuracy")),
             _pct(r.get("top1_agreement_vs_simulation")),
             "-" if r.get("max_lsb_vs_int_reference") is None else r["max_lsb_vs_int_reference"],
             _pct(r.get("bit_exact_fraction")), f"{r.get('eval_seconds', 0):.0f} s",
             _kb(r.get("model_size_bytes"))] for r in data["rows"]]
    lat = data.get("litert_latency_ms", {})
    speed = [[k.split("@")[1], f"{v['batch1']:.2f}x", f"{v['batch32']:.2f}x"]
             for k, v in lat.items() if k.startswith("speedup")]
    return [f"### {title} (`bench/mobile_dsp.py`, `{name}`)", "",
            f"{data['eval_images']:,} test images, W8A8; whole run "
            f"{data['wall_seconds'] / 60:.0f} min. Machine: {machine(data['environment'])}.", "",
            *_table(["target", "scheme", "accuracy", "top-1 agr. with sim", "max LSB vs int-ref",
                     "bit-exact share", "eval time", "file"], rows), "",
            "LiteRT (XNNPACK) int8 over float speed-up:", "",
            *_table(["threads", "batch 1", "batch 32 (per image)"], speed), ""]


def cpu_int8_section() -> list[str]:
    data = _load("cpu_int8_resnet20.json")
    if not data:
        return []
    rows = [[r["target"], r["scheme"], r.get("artifact", ""), _pct(r.get("accuracy")),
             _pct(r.get("top1_agreement")), _kb(r.get("model_size_bytes")),
             _ms(r["latency_ms"].get("batch1_median")),
             _ms(r["latency_ms"].get("per_image_at_batch_ms"))] for r in data["rows"]]
    ratio = data["latency_ratio_batch1"]
    return ["### ResNet-20 int8 on CPU vs ONNX Runtime's quantizer (`bench/cpu_int8_resnet20.py`)",
            "", f"Machine: {machine(data['environment'])}.", "",
            *_table(["target", "scheme", "artifact", "accuracy", "top-1 agr.", "size",
                     "batch-1 ms", "ms/img at batch 32"], rows), "",
            "int8 / float latency at batch 1: " + "; ".join(
                f"{t} {v['convdeploy_int8_over_float']:.2f} (ORT quantizer "
                f"{v['ort_static_int8_over_float']:.2f})" for t, v in ratio.items()) + ".", ""]


def modern_convnets_section() -> list[str]:
    """bench/modern_convnets.py: every zoo model x scheme x target, with its float islands."""
    data = _load("modern_convnets.json")
    if data is None:
        return ["Not run yet: train the zoo models (`python -m convdeploy.models.modern_cifar "
                "--model NAME --train ...`), then `python bench/modern_convnets.py`.", ""]

    def extra(group, first):
        ratio = {c.get("batch_size"): c.get("speedup_vs_float") for c in group}
        islands = (first.get("runtime") or {}).get("float_islands")
        return ["native (QDQ)" if islands is None else str(len(islands)),
                _num(ratio.get(1), 2), _num(ratio.get(32), 2)]
    return _spec_audit(data, [*_AUDIT_COLUMNS, "float islands", "float/int8 time, batch 1",
                              "batch 32"], extra) + modern_checks(data["cells"])


def modern_checks(cells: list[dict]) -> list[str]:
    """Issue 11's bars: W8A8 within 1 point of float on every target, W4A8 stated; LiteRT's
    reference kernels against the integer reference; int8/float per CPU/mobile runtime."""
    return _scheme_checks(cells, {"w8a8": 1.0, "w4a8": None},
                          ("cpu-ort", "cpu-openvino", "mobile-litert"), "batch_size", not_run=True)


def gpu_section() -> list[str]:
    """bench/gpu.py: int8 Triton kernels vs PyTorch CUDA float, on the lent GPU."""
    data = _load("gpu.json")
    if not data:
        return ["Not run yet: `python bench/gpu.py prepare`, then `python bench/gpu.py run` on a "
                "machine with an NVIDIA GPU.", ""]
    v = data["versions"]
    lines = [f"{data['device']}; torch {v['torch']}, triton {v['triton']}, CUDA {v['cuda']}, "
             f"cuDNN {v['cudnn']}"
             + ("; cuDNN TF32 allowed for fp32 convolutions (PyTorch's default)"
                if v.get("cudnn_allow_tf32") else "")
             + f"; convdeploy {data['revision']}, {data['scheme']}; gpu-torch rows channels-last "
             "unless marked NCHW. "
             f"{data['clock']}; images/s at batch {data['batch']}. \"equal to int-reference\": "
             "output codes on the full CIFAR-10 test split equal to the integer reference's "
             "(computed on the CPU from the same QDQ file).", ""]
    b = data["batch"]
    for name, m in data["models"].items():
        # the faster fp32 layout (channels-last or NCHW) is the baseline
        base = max((r.get("images_per_s") or 0 for k, r in m.get("torch", {}).items()
                    if k.startswith("float32")), default=0) or None

        def row(label: str, r: dict, equal: str) -> list[str]:
            ips = r.get("images_per_s")
            return [label, _pct(r["accuracy"]), equal, _ms(r.get("batch1_median_ms")),
                    _ms(r.get(f"batch{b}_median_ms")), "-" if ips is None else f"{ips:,.0f}",
                    f"{ips / base:.2f}x" if ips and base else "-",
                    _ms(r.get("eager_batch1_median_ms")), _ms(r.get(f"eager_batch{b}_median_ms"))]
        rows = [row(f"gpu-triton int8 ({algo})", r, f"{r['outputs_equal']:,} / {r['outputs']:,}")
                for algo, r in m.get("triton", {}).items()]
        rows += [row(f"gpu-torch {prec}", r, "-") for prec, r in m.get("torch", {}).items()]

        lines += [f"**{name}** (int-reference accuracy {_pct(m['int_reference_accuracy'])})", ""]
        lines += _table(["target", "accuracy", "equal to int-reference", "batch-1 ms",
                         f"batch-{b} ms", "images/s", "vs best fp32 images/s", "eager batch-1 ms",
                         f"eager batch-{b} ms"], rows) + [""]
        lines += [f"{m[k]}" for k in ("triton_error", "torch_error") if k in m]
        if m.get("layers"):
            lines += _layer_rows(m["layers"], b)
    return lines


def gpu_summary() -> list[str]:
    """One README line per model of bench/gpu.py: exactness and int8 vs fp32 throughput."""
    data = _load("gpu.json")
    if not data:
        return []
    b = data["batch"]
    parts = []
    for name, m in data["models"].items():
        t = m.get("triton", {}).get("implicit-gemm")
        fp32 = [r for k, r in m.get("torch", {}).items()
                if k.startswith("float32") and "images_per_s" in r]
        if not t or not fp32 or "images_per_s" not in t:
            continue
        best = max(r["images_per_s"] for r in fp32)
        fastest = min(r["batch1_median_ms"] for r in fp32)
        top, top_row = max(((k, r) for k, r in m["torch"].items() if "images_per_s" in r),
                           key=lambda kr: kr[1]["images_per_s"])
        parts.append(f"{name}: {t['outputs_equal']:,} of {t['outputs']:,} output codes equal "
                     f"to int-reference; at batch {b} {t['images_per_s'] / best:.2f}x the "
                     f"images/s of PyTorch CUDA fp32 (its faster layout) and "
                     f"{t['images_per_s'] / top_row['images_per_s']:.2f}x its fastest row "
                     f"({top}); batch-1 latency {t['batch1_median_ms']:.3f} ms vs "
                     f"{fastest:.3f} ms fp32")
    return ([f"- GPU ({data['device']}, `bench/gpu.py`; gpu-triton int8, implicit GEMM, "
             "CUDA-graph replay, full test split): " + "; ".join(parts) + ".", ""]
            if parts else [])


def fpga_section() -> list[str]:
    """bench/fpga.py: C-simulation exactness and speed, and the analytical estimate."""
    data = _load("fpga.json")
    if not data:
        return ["Not run yet: `python bench/fpga.py`.", ""]
    env = data["environment"]
    lines = [f"{machine(env)}; {data['compiler']}; convdeploy {data['revision']}. C-simulation "
             "of the generated HLS C++ (g++ -std=c++17 -O2, OpenMP over samples) on the full "
             "CIFAR-10 test split; \"equal\": output codes equal to the integer reference's "
             "(same QDQ file). Estimate: analytical (hls4ml/FINN-R models), not synthesis, "
             "io_stream; the folding is the fastest that fits the part, or, where nothing fits, "
             "the fully folded design (ReuseFactor = MACs per pixel) and by how much it misses.",
             ""]
    rows = []
    for name, schemes in data["models"].items():
        for scheme, m in schemes.items():
            e = m["estimate"]
            t, u = e["totals"], e["utilisation"]
            rows.append([name, scheme, f"{m['outputs_equal']:,} / {m['outputs']:,}",
                         _pct(m["accuracy_csim"]), f"{m['csim_images_per_s']:,.0f}",
                         f"{m['generate_seconds']:.1f} + {m['compile_seconds']:.1f}",
                         f"{e['part'].split('-')[0]} {e['clock_mhz']:g} MHz",
                         f"{t['dsp']} ({100 * u['dsp']:.0f}%)",
                         f"{t['lut']:,} ({100 * u['lut']:.0f}%)",
                         f"{t['bram18']} ({100 * u['bram18']:.0f}%)", f"{t['multipliers']:,}",
                         "yes" if e["fits"] else "**no**", f"{e['fps']:,.1f}",
                         f"{e['latency_ms']:.2f}"])
    return lines + _table(["model", "scheme", "equal to int-reference", "accuracy",
                           f"C-sim images/s ({data['environment'].get('threads')} threads)",
                           "generate + compile s", "part", "DSP", "LUT", "BRAM18",
                           "multipliers", "fits", "est. fps", "est. latency ms"], rows) + [""]


def fpga_summary() -> list[str]:
    data = _load("fpga.json")
    if not data:
        return []
    parts = []
    for name, schemes in data["models"].items():
        for scheme, m in schemes.items():
            e = m["estimate"]
            u = e["utilisation"]
            fit = (f"estimate {e['fps']:,.0f} fps on {e['board']}" if e["fits"] else
                   f"does not fit {e['board']} (DSP {100 * u['dsp']:.0f}%, BRAM "
                   f"{100 * u['bram18']:.0f}%)")
            parts.append(f"{name} {scheme}: {m['outputs_equal']:,} of {m['outputs']:,} codes "
                         f"equal, {fit}")
    return ["- FPGA (`bench/fpga.py`, generated HLS C++ in g++ C-simulation, full test split): "
            + "; ".join(parts) + ".", ""]


def _layer_rows(layers: list[dict], batch: int) -> list[str]:
    """im2win vs implicit GEMM per distinct dense-convolution shape (repeated layers: median)."""
    groups: dict[tuple, list[dict]] = {}
    for r in layers:
        key = (tuple(r["input"]), tuple(r["output"]), tuple(r["kernel"]), tuple(r["stride"]))
        groups.setdefault(key, []).append(r)
    rows = []
    for (cin, cout, k, st), rs in groups.items():
        med = lambda f: sorted(x[f] for x in rs)[len(rs) // 2]  # noqa: E731
        rows.append([f"{cin[0]}x{cin[1]}x{cin[2]} -> {cout[0]}x{cout[1]}x{cout[2]}",
                     f"{k[0]}x{k[1]}/{st[0]}", str(len(rs)), _ms(med("implicit_gemm_ms")),
                     _ms(med("im2win_ms")), f"{med('implicit_gemm_ms') / med('im2win_ms'):.2f}x",
                     _kb(med("im2win_window_bytes")), _kb(med("im2win_workspace_bytes")),
                     _kb(med("im2col_bytes")),
                     _kb(med("input_bytes"))])
    return [f"Dense convolutions at batch {batch}, im2win vs implicit GEMM (median over layers "
            "of one shape). Memory: the im2win window tensor, the device memory the im2win layer "
            "allocated besides its output (measured peak; implicit GEMM allocates none), and what "
            "explicit im2col would need. Times: a CUDA graph of the layer 20 times, divided:",
            "",
            *_table(["layer (C x H x W)", "kernel/stride", "layers", "implicit GEMM ms",
                     "im2win ms", "im2win speed-up", "im2win window", "im2win allocated",
                     "im2col buffer", "input"], rows), ""]


def benchmarks_page() -> str:
    lines = ["# Benchmarks", "",
             "Generated by `python bench/render_docs.py` from `bench/results/*.json`; every "
             "number below comes from those files (each names its machine). Notes that "
             "interpret them: [results-notes.md](results-notes.md).", "",
             "## Accuracy-vs-latency audit (`bench/audit_cifar.py`)", ""]
    for path in sorted(RESULTS.glob("audit_cifar*.json")):
        data = json.loads(path.read_text())
        bench = data.get("benchmark", {})
        title = (f"{'Ray executor (local cluster)' if bench.get('executor') == 'ray' else 'Local executor'}"
                 f": {', '.join(bench.get('models_run', []))} (`{path.name}`)")
        lines += audit_section(data, title)
    lines += ["## Modern ConvNets on every integer target (`bench/modern_convnets.py`)", "",
              *modern_convnets_section(),
              "## Integer reference", "", *int_reference_section(),
              "## PTQ methods and QAT", "",
              *ptq_qat_section("ptq_qat_resnet20.json", "ResNet-20"),
              *ptq_qat_section("ptq_qat_resnet20_partial.json", "ResNet-20, added rows"),
              *ptq_qat_section("ptq_qat_mobilenetv2.json", "MobileNetV2 (60 epochs)"),
              *ptq_qat_section("ptq_qat_mobilenetv2_partial.json",
                               "MobileNetV2 (60 epochs), added rows"),
              *ptq_qat_section("ptq_qat_mobilenetv2_20ep.json", "MobileNetV2 (20 epochs)"),
              "## Mobile and DSP targets", "",
              *mobile_dsp_section("mobile_dsp_resnet20.json", "ResNet-20"),
              *mobile_dsp_section("mobile_dsp_mobilenetv2.json", "MobileNetV2"),
              "## CPU int8", "", *cpu_int8_section(),
              "## Per-layer efficiency (`bench/efficiency.py`)", "", *efficiency_section(),
              "## Mixed precision by measured latency (`bench/tune.py`)", "", *tune_section(),
              "### On the HTP: 8- or 16-bit activations per layer", "",
              *tune_section("tune_htp.json"),
              "## Video models on every target (`bench/video.py`)", "", *video_section(),
              "## GPU: int8 Triton kernels and PyTorch CUDA (`bench/gpu.py`)", "",
              *gpu_section(),
              "## FPGA: generated HLS C++ (`bench/fpga.py`)", "", *fpga_section()]
    return "\n".join(lines).rstrip() + "\n"


def readme_block() -> str:
    lines = [BEGIN, "<!-- generated by bench/render_docs.py from bench/results/*.json -->", ""]
    audit = _load("audit_cifar.json")
    if audit:
        bench = audit.get("benchmark", {})
        lines += [f"Accuracy-vs-latency audit (`bench/audit_cifar.py`, full CIFAR-10 test split, "
                  f"{machine(audit['fingerprints']['environment']).split(';')[0]}; this run "
                  f"{_reuse_text(bench)}):", "",
                  *audit_summary(audit)]
        for path in sorted(RESULTS.glob("audit_cifar_*.json")):
            extra = json.loads(path.read_text())
            if extra.get("benchmark", {}).get("executor") == "local":
                eb = extra["benchmark"]
                lines += [line.removesuffix(".") + f" (`{path.name}`: targets "
                                                   f"{', '.join(eb['targets_run'])})."
                          for line in audit_summary(extra)]
        lines.append("")
        ray = _load("audit_cifar_ray.json")
        if ray and ray["benchmark"].get("accuracy_vs_local", {}).get("compared"):
            cmp = ray["benchmark"]["accuracy_vs_local"]
            rb = ray["benchmark"]
            lines += [f"- On a local Ray cluster ({', '.join(rb['models_run'])}; targets "
                      f"{', '.join(rb.get('targets_run') or [])}): "
                      + (f"every one of its {cmp['cells']} cells has the local run's accuracy "
                         "figures." if cmp["equal"] else
                         f"{len(cmp['differing'])} of {cmp['cells']} cells differ."), ""]
    speed = int_reference_section()
    if speed:
        before = _load("int_reference_speed_before.json")
        after = _load("int_reference_speed_after.json")
        lines += [f"- Integer reference, ResNet-20 full split: "
                  f"{before['int_reference_seconds']:.0f} s -> "
                  f"{after['int_reference_seconds']:.0f} s "
                  f"({before['int_reference_seconds'] / after['int_reference_seconds']:.1f}x), "
                  "bit-identical logits, equal to LiteRT's reference kernels.", ""]
    lines += efficiency_summary()
    lines += tune_summary()
    lines += gpu_summary()
    lines += fpga_summary()
    video = _load("video.json")
    if video:
        env = video["fingerprints"]["environment"]
        lines += [f"Video models (`bench/video.py`, 2,500 camera-motion test clips, "
                  f"{machine(env).split(';')[0]}):", "",
                  *video_checks(video["cells"])[2:]]
    lines += video_demo_summary()
    modern = _load("modern_convnets.json")
    if modern:
        env = modern["fingerprints"]["environment"]
        lines += [f"Modern ConvNets (`bench/modern_convnets.py`, full CIFAR-10 test split, "
                  f"{machine(env).split(';')[0]}):", "", *modern_checks(modern["cells"])[2:]]
    lines += ["Every table, with its machine: [docs/benchmarks.md](docs/benchmarks.md).", END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args()
    page = benchmarks_page()
    readme_path = REPO / "README.md"
    readme = readme_path.read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = readme.split(BEGIN, 1)
    new_readme = head + readme_block() + rest.split(END, 1)[1]
    docs = REPO / "docs" / "benchmarks.md"
    if args.check:
        stale = [p.name for p, text in ((docs, page), (readme_path, new_readme))
                 if not p.exists() or p.read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run python bench/render_docs.py", file=sys.stderr)
            return 1
        return 0
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(page)
    readme_path.write_text(new_readme)
    print(f"wrote {docs.relative_to(REPO)} and the README results block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
