"""The report: JSON (machine-readable), Markdown (for humans), and a terminal table."""
from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import write_text_atomic
from .latency import busy_cores, disturbed

REPORT_VERSION = 1


def source_revision(directory: Path) -> str | None:
    """The git commit of the checkout holding ``directory`` (with "+changes" when tracked files
    outside ``bench/results/`` differ from it), as benchmarks record what they measured; None
    outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=directory, text=True,
                              capture_output=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=directory, text=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    # what the benchmarks write is not source: a bench resuming its own results file (which
    # it rewrites after each model) would otherwise no longer know its revision
    dirty = [ln for ln in status.splitlines() if ln[3:] and not ln[3:].startswith(RESULTS)]
    return head + ("+changes" if dirty else "")


RESULTS = "bench/results/"  # benchmark outputs, in the repository beside the code


def cpu_model() -> str:
    """The CPU's marketing name (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int) -> dict:
    """The machine and library versions the numbers were measured with."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "onnx", "onnxruntime", "openvino", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions}


@dataclass
class Report:
    model: str
    float: dict
    results: list[dict] = field(default_factory=list)
    model_info: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    scheme: dict | None = None
    environment: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2)

    def rows(self) -> list[list[str]]:
        header = ["target", "scheme", "accuracy", "top-1 agr.", "SQNR dB", "max LSB vs sim",
                  "LSB vs int-ref (exact %)", "batch-1 ms", "batch-N ms/img"]
        out = [header]
        for r in self.results:
            lat = r.get("latency_ms") or {}
            out.append([
                r["target"], r["scheme"], _pct(r.get("accuracy")), _pct(r["top1_agreement"]),
                "exact" if r.get("sqnr_db") is None else f"{r['sqnr_db']:.1f}",
                "-" if r.get("max_lsb_vs_simulation") is None
                else f"{r['max_lsb_vs_simulation']:.2f}",
                "-" if r.get("max_lsb_vs_int_reference") is None
                else f"{r['max_lsb_vs_int_reference']} ({100 * r['bit_exact_fraction']:.1f}%)",
                _num(lat.get("batch1_median")) + ("*" if disturbed(lat) else ""),
                _num(lat.get("per_image_at_batch_ms"), 3),
            ])
        return out

    def disturbed_note(self) -> list[str]:
        """A footnote for latencies timed beside other work (marked * in the tables)."""
        busy = [r for r in self.results if disturbed(r.get("latency_ms") or {})]
        if not busy:
            return []
        worst = max(busy_cores(r["latency_ms"]) for r in busy)
        return [f"* timed while other processes kept up to {worst:.2f} CPU cores busy: an "
                "upper bound (rerun on a quiet machine for an honest figure)"]

    def table(self) -> str:
        rows = self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + self.disturbed_note())

    def markdown(self) -> str:
        rows = self.rows()
        md = [f"# convdeploy report: {self.model}", ""]
        acc = self.float.get("accuracy")
        md.append(f"Float accuracy: {_pct(acc)}" + (
            f" (95% CI {_pct(self.float['accuracy_ci95'][0])}-"
            f"{_pct(self.float['accuracy_ci95'][1])})" if acc is not None else "") +
            f" on {self.data.get('eval', {}).get('samples', '?')} samples of "
            f"`{self.data.get('eval', {}).get('source', '?')}`.")
        if self.scheme:
            md.append(f"Scheme: `{self.scheme['name']}` (weights {_tq_text(self.scheme['weights'])}"
                      f", activations {_tq_text(self.scheme['activations'])}, calibration "
                      f"{self.scheme['calibration']} on {self.data.get('calib', {}).get('samples')}"
                      " images).")
        if self.model_info.get("conv3d_as_2d"):
            md.append(f"Form: every target ran the (2+1)D form of the "
                      f"{len(self.model_info['conv3d_as_2d'])} Conv3d layers (--conv3d-as-2d).")
        md += ["", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        md += ["", "- *accuracy*: top-1 on the evaluation labels (95% Wilson interval in JSON).",
               "- *top-1 agr.*: share of samples whose top-1 class equals the float model's.",
               "- *SQNR*: logits vs float logits (quantization + backend error), in dB.",
               "- *max LSB vs sim*: largest output difference from the fake-quant simulation, in "
               "units of the output quantization step (the backend's own error).",
               "- *LSB vs int-ref*: largest output difference from the integer reference "
               "(int32 accumulators, fixed-point requantization), in output LSBs (0 = "
               "bit-exact), and the share of output values equal to it.",
               f"- Latency: median of timed runs after warm-up, {self.environment.get('threads')} "
               f"threads, on {self.environment.get('cpu')}."]
        md += [f"- {line}" for line in self.disturbed_note()] + [""]
        for r in self.results:
            if r.get("runtime"):
                shown = {k: v for k, v in r["runtime"].items() if k != "estimate"}
                md.append(f"- `{r['target']}` / `{r['scheme']}`: {json.dumps(shown)}")
        for r in self.results:
            if isinstance(r.get("runtime"), dict) and r["runtime"].get("estimate"):
                md += ["", *estimate_markdown(r["scheme"], r["runtime"]["estimate"],
                                              r["runtime"].get("synthesis"))]
        return "\n".join(md) + "\n"

    def write(self, directory: Path) -> None:
        write_text_atomic(directory / "report.json", self.to_json())
        write_text_atomic(directory / "report.md", self.markdown())


def estimate_markdown(scheme: str, est: dict, synthesis: dict | None = None) -> list[str]:
    """The FPGA estimate of one quantized model as markdown: totals against the part's budget,
    latency and throughput, then every layer's folding and resources."""
    t, b, u = est["totals"], est["budget"], est["utilisation"]
    md = [f"## FPGA estimate, `{scheme}`: {est['label']}", "",
          f"Part {est['part']} ({est['board']}) at {est['clock_mhz']:g} MHz, {est['io']}; "
          f"folding: {est['folding_search']}. Latency {est['latency_ms']:.3f} ms, "
          f"{est['fps']:.1f} frames/s; {'fits' if est['fits'] else '**does not fit**'} the part."
          f" Synthesis: {(synthesis or {}).get('status', 'not run')}.", "",
          "| resource | used | budget | share |", "|---|---|---|---|"]
    md += [f"| {k} | {t[k]:,} | {b[k]:,} | {100 * u[k]:.1f}% |" for k in ("dsp", "lut", "ff",
                                                                        "bram18")]
    md += ["", "| layer | kind | MACs | W/A bits | reuse | multipliers | cycles | DSP | LUT | "
           "BRAM18 |", "|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {c['ident']} | {c['kind']} | {c['macs']:,} | {c['weight_bits'] or '-'}/"
           f"{c['act_bits']} | {c['reuse']} | {c['multipliers']} | {c['cycles']:,} | "
           f"{c['dsp']} | {c['lut']:,} | {c['bram18']} |" for c in est["layers"]]
    return md


def _tq_text(tq: dict | None) -> str:
    """``{'bits': 8, 'signed': False, ...}`` -> ``uint8 asymmetric per-tensor``."""
    if tq is None:
        return "float"
    kind = f"{'' if tq['signed'] else 'u'}int{tq['bits']}"
    return (f"{kind} {'symmetric' if tq['symmetric'] else 'asymmetric'} "
            f"{'per-channel' if tq['per_channel'] else 'per-tensor'}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _finite(obj):
    """JSON has no inf/NaN: write them as null (SQNR of identical outputs is reported as null)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
