"""The video tables: bench/video.py's audit (forms, issue 12's checks, the 5-D vs 2-D table)
and bench/video_demo.py's README line."""
from __future__ import annotations

import json

import numpy as np
from render_tables import (RESULTS, _AUDIT_COLUMNS, _load, _ms, _num, _pct, _scheme_checks,
                           _spec_audit, _table, machine, sentence)


def video_section() -> list[str]:
    """bench/video.py: the video zoo x scheme x target; the single-frame baselines."""
    data = _load("video.json")
    if data is None:
        return ["Not run yet: train the video models (`python -m convdeploy.models.video_motion "
                "--model NAME --train ... --eval ...`), then `python bench/video.py`.", ""]

    def extra(group, first):
        ratio = {c.get("threads"): c.get("speedup_vs_float") for c in group}
        ms = {c.get("threads"): c.get("latency_median_ms") for c in group}
        return [_video_form(first), _num(ms.get(1), 2), _num(ms.get(2), 2),
                _num(ratio.get(1), 2), _num(ratio.get(2), 2)]
    lines = _spec_audit(data, [*_AUDIT_COLUMNS, "form", "ms/clip 1 thread", "2 threads",
                               "float/int8 time, 1 thread", "2 threads"], extra)
    lines += video_checks(data["cells"]) + _video_forms(data["cells"])
    lines += _earlier_runs(data)
    for model, runs in data.get("single_frame_baseline", {}).items():
        if "model" in runs and "single_frame" in runs:
            lines.append(f"- {model}: recipe's float model {_pct(runs['model']['test_accuracy'])}"
                         f", single-frame baseline {_pct(runs['single_frame']['test_accuracy'])} "
                         f"(chance {_pct(runs['single_frame']['chance'])}).")
    return lines + [""]


TWO_D = " (2-D form)"


def _video_form(cell: dict) -> str:
    """Which form of a video model a cell ran: the 5-D QDQ, the lowering's 2-D rewrite, or the
    same rewrite exported by --conv3d-as-2d."""
    rewritten = (cell.get("runtime") or {}).get("rewritten_2d")
    if cell["model"].endswith(TWO_D):
        return "2-D (--conv3d-as-2d)"
    return "5-D (QDQ)" if rewritten is None else f"2-D ({len(rewritten)} rewritten)"


def video_checks(cells: list[dict]) -> list[str]:
    """Issue 12's bars: W8A8 within 1 point and W4A8 within 2 of float on every target;
    LiteRT's reference kernels against the integer reference; int8/float on LiteRT."""
    return _scheme_checks(cells, {"w8a8": 1.0, "w4a8": 2.0}, ("mobile-litert",), "threads")


def _video_forms(cells: list[dict]) -> list[str]:
    """A video model's 5-D form beside its --conv3d-as-2d form on the runtimes that take both."""
    lines = []
    for model in {c["model"].removesuffix(TWO_D) for c in cells if c["model"].endswith(TWO_D)}:
        rows = []
        for scheme, target in dict.fromkeys((c["scheme"], c["target"]) for c in cells
                                            if c["model"] == model):
            if target not in ("cpu-ort", "cpu-openvino", "dsp-qnn-htp"):
                continue
            pair = [[c for c in cells if c["model"] == m and c["scheme"] == scheme and
                     c["target"] == target and c.get("status") == "ok"]
                    for m in (model, model + TWO_D)]
            if not all(pair):
                continue
            ms = [{c.get("threads"): c.get("latency_median_ms") for c in p} for p in pair]
            ratio = [None if not (m5.get(t) and m2.get(t)) else m5[t] / m2[t]
                     for m5, m2, t in ((ms[0], ms[1], 1), (ms[0], ms[1], 2))]
            rows.append([scheme, target, _pct(pair[0][0].get("accuracy")),
                         _pct(pair[1][0].get("accuracy")), _ms(ms[0].get(1)), _ms(ms[1].get(1)),
                         _ms(ms[0].get(2)), _ms(ms[1].get(2)),
                         " / ".join(_num(r, 2) for r in ratio)])
        if rows:
            lines += [f"**{model}: 5-D form vs its 2-D form** (the rewrite LiteRT and the integer "
                      "reference run, exported with `--conv3d-as-2d`), same run:", "",
                      *_table(["scheme", "target", "accuracy 5-D", "accuracy 2-D",
                               "ms/clip 5-D, 1 thread", "2-D, 1 thread", "5-D, 2 threads",
                               "2-D, 2 threads", "5-D time / 2-D time (1 / 2 threads)"], rows),
                      ""]
    return lines


def _earlier_runs(data: dict) -> list[str]:
    """Run-to-run spread: int8/float per model, runtime and thread count in this run and in
    the earlier full runs of the same spec kept beside it (``video_run_<commit>.json``)."""
    earlier = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("video_run_*.json"))]
    if not earlier:
        return []

    def ratios(cells):
        return {(c["model"], c["target"], c["threads"]): c.get("speedup_vs_float")
                for c in cells if c.get("status") == "ok" and c["preset"] == "w8a8"
                and c.get("speedup_vs_float")}

    def medians(cells):
        return {(c["model"], c["preset"], c["target"], c["threads"]): c["latency_median_ms"]
                for c in cells if c.get("status") == "ok" and c.get("latency_median_ms")}

    def accuracies(cells):
        return {(c["model"], c["preset"], c["target"]): c.get("accuracy") for c in cells
                if c.get("status") == "ok"}
    lines = ["**Earlier full runs of this spec**, kept beside it (bench/results/video_run_*.json), "
             "against this one:", ""]
    now, ms_now, acc_now = ratios(data["cells"]), medians(data["cells"]), accuracies(data["cells"])
    columns = []
    for run in earlier:
        bench = run.get("benchmark", {})
        ms_then, acc_then = medians(run["cells"]), accuracies(run["cells"])
        spread = [abs(ms_now[k] / ms_then[k] - 1) for k in ms_now if k in ms_then]
        same = all(acc_then.get(k) == v for k, v in acc_now.items() if k in acc_then)
        lines.append(f"- convdeploy {bench.get('commit', '?')}: accuracy "
                     + ("identical in every cell" if same else "NOT identical")
                     + f"; latency medians {100 * np.median(spread):.1f}% apart (median over "
                     f"{len(spread)} cells), at most {100 * max(spread):.0f}%"
                     + (f". Its note: {sentence(bench['note'])}" if bench.get("note") else "."))
        columns.append((bench.get("commit", "?"), ratios(run["cells"])))
    rows = [[m, t, str(k), *(_num(r.get(key), 2) for _, r in columns), _num(now[key], 2)]
            for key in now for m, t, k in [key]]
    return lines + ["", "int8/float time at batch 1, run by run:", "",
                    *_table(["model", "target", "threads", *(f"run at {c}" for c, _ in columns),
                             "this run"], rows), ""]


def video_demo_summary() -> list[str]:
    """bench/video_demo.py: the demo on a real clip, one README line."""
    data = _load("video_demo.json")
    if not data or data["clip"].get("returncode") != 0:
        return []
    c, d = data["clip"], data["default"]
    return [f"- Video demo (`bench/video_demo.py`, {machine(data['environment']).split(';')[0]}): "
            f"{c['model']} int8 on {c['target']}, {c['source']} ({c['windows']} windows): "
            f"float/int8 agreement {c['agreement']:.1%}, int8 {c['int8_ms_median']:.2f} ms "
            f"median per window vs float {c['float_ms_median']:.2f} ms; the no-argument demo "
            f"took {d['seconds']:.0f} s{'; ' + data['note'] if data.get('note') else ''}. Page: "
            "[bench/results/video_demo.png](bench/results/video_demo.png).", ""]
