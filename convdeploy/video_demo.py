"""The mobile video inference demo: a video, sliding-window clip inference with the int8 model
on a deployment target (default ``mobile-litert``, XNNPACK: the phone-CPU path) and the float
model beside it, per window prediction, confidence, agreement and latency; an annotated H.264
mp4, a GIF preview, ``demo.html`` (the video, a timeline of float vs int8 predictions, the
latency per window) and ``demo.json``.

The model is quantized (W8A8, calibration on the model's default clips) and exported the way
``convdeploy export`` does it (``pipeline.prepare_run`` and ``quantize_and_export``), so the
demo runs exactly the artifact a report would measure.
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConvdeployError

DEFAULT_MODEL = "p3d-motion"


@dataclass(frozen=True)
class VideoDemoConfig:
    """``clip`` None: a clip generated from scikit-learn's sample photographs (no download)."""

    clip: Path | None = None
    model: str = DEFAULT_MODEL
    weights: str | None = None
    target: str = "mobile-litert"
    hop: int = 4
    threads: int = 2
    out: Path = Path("video-demo")
    overwrite: bool = False
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.hop < 1 or self.threads < 1:
            raise ValueError("hop and threads must be at least 1")


def _frames(path: Path | None, preprocess) -> tuple[np.ndarray, np.ndarray, str, float]:
    """(display frames (F, h, w, 3), model frames (F, H, W, C), source name, fps)."""
    from PIL import Image

    from convdeploy.models.datasets import _fit

    if path is None:
        from convdeploy.models.motion_clips import MotionConfig, generate, sample_photographs

        cfg = MotionConfig(frames=preprocess.frames, size=preprocess.size[0])
        clips = generate(sample_photographs(), 12, cfg=cfg, seed=7)
        model = np.concatenate(list(clips.images))
        display = np.stack([np.asarray(Image.fromarray(f).resize((192, 192), Image.NEAREST))
                            for f in model])
        return display, model, "generated camera-motion clip (scikit-learn photographs)", 8.0
    from convdeploy.models.clips import video_frames

    display, model = [], []
    try:
        fps, images = video_frames(path)
        for image in images:
            scale = 360 / max(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale) // 2 * 2,
                                      round(image.height * scale) // 2 * 2))
            display.append(np.asarray(image.convert("RGB")))
            model.append(np.asarray(_fit(image, preprocess), dtype=np.uint8))
    except ConvdeployError as exc:  # the data loader's fix names --skip-bad-files
        raise ConvdeployError(exc.problem, fix="give a readable video file (mp4, avi, mkv, "
                                               "webm)") from exc
    if not model:
        raise ConvdeployError(f"no frame could be decoded from {path}",
                              fix="give a non-empty video file")
    model = np.stack(model)
    return np.stack(display), model if model.ndim == 4 else model[..., None], path.name, fps


def _windows(n_frames: int, preprocess, hop: int) -> list[int]:
    span = (preprocess.frames - 1) * preprocess.frame_stride + 1
    if n_frames < span:
        raise ConvdeployError(f"the video has {n_frames} frames, a window needs {span}",
                              fix="give a longer video")
    return list(range(0, n_frames - span + 1, hop))


def run_demo(cfg: VideoDemoConfig) -> dict:
    from .config import DataConfig, DeployConfig, MeasureConfig, ModelSource
    from .files import staged_directory
    from convdeploy.quant.scheme import W8A8
    from convdeploy.targets import registry
    from convdeploy.targets.base import RuntimeOptions

    from .pipeline import _runs, prepare_run, quantize_and_export, resolve_targets

    from convdeploy.models.zoo import ZOO

    spec = ZOO.get(cfg.model)
    if spec is None or not spec.preprocess.video:
        video = ", ".join(n for n, m in ZOO.items() if m.preprocess.video)
        raise ConvdeployError(f"{cfg.model} is not a video model of the zoo",
                              fix=f"choose one of: {video}")
    deploy = DeployConfig(model=ModelSource(cfg.model, cfg.weights), data=DataConfig(
        calib_size=128), scheme=W8A8, targets=(cfg.target,), out=cfg.out,
        measure=MeasureConfig(threads=cfg.threads), progress=False)
    pre = spec.preprocess  # the clip is read (and refused) before any model work
    display, frames, source, fps = _frames(cfg.clip, pre)
    starts = _windows(len(frames), pre, cfg.hop)[:cfg.max_windows]
    prep = prepare_run(deploy)
    classes = getattr(prep.eval_set, "classes", None) or [str(i) for i in range(999)]
    with staged_directory(cfg.out, overwrite=cfg.overwrite) as stage:
        targets = resolve_targets((cfg.target,))
        target = next(t for t in targets if t.name == cfg.target)
        refs_art, artifacts, _ = quantize_and_export(deploy, prep, stage / "models", targets)
        options = RuntimeOptions(cfg.threads)
        int8 = next(a for a in artifacts if a.quantized and _runs(target, a))
        flt = next((a for a in artifacts if not a.quantized and _runs(target, a)), None)
        float_target = target if flt is not None else registry.get("reference")
        if flt is None:  # a target without float (the HTP): the float model in torch beside it
            flt = refs_art[0]
        runs = {"float": float_target.compile(flt, stage / "work", options=options),
                "int8": target.compile(int8, stage / "work", options=options)}
        warm = np.zeros((1, *pre.input_shape), np.float32)
        for runnable in runs.values():  # first calls allocate: not a window's latency
            for _ in range(3):
                runnable({int8.input_name: warm})
        mean = np.asarray(pre.mean, np.float32)
        std = np.asarray(pre.std, np.float32)
        rows = []
        for start in starts:
            clip = frames[start:start + pre.frames * pre.frame_stride:pre.frame_stride]
            x = ((clip.astype(np.float32) / 255 - mean) / std).transpose(3, 0, 1, 2)[None]
            row = {"start_frame": start}
            for name, runnable in runs.items():
                t0 = time.perf_counter()
                logits = next(iter(runnable({int8.input_name: np.ascontiguousarray(x)})
                                   .values()))[0]
                ms = (time.perf_counter() - t0) * 1e3
                p = np.exp(logits - logits.max())
                p /= p.sum()
                row[name] = {"class": classes[int(p.argmax())], "confidence": float(p.max()),
                             "ms": ms}
            row["agree"] = row["float"]["class"] == row["int8"]["class"]
            rows.append(row)
        summary = _summary(cfg, rows, source, fps, target.name)
        summary["float_runs_on"] = float_target.name
        _write_outputs(stage, display, rows, pre, fps, summary)
        import shutil

        shutil.rmtree(stage / "work", ignore_errors=True)
    return summary


def _summary(cfg, rows, source, fps, target) -> dict:
    ms = np.asarray([r["int8"]["ms"] for r in rows])
    float_ms = np.asarray([r["float"]["ms"] for r in rows])
    return {"source": source, "model": cfg.model, "target": target, "windows": len(rows),
            "hop": cfg.hop, "fps": fps, "threads": cfg.threads,
            "agreement": float(np.mean([r["agree"] for r in rows])),
            "int8_ms_median": float(np.median(ms)), "int8_ms_p90": float(np.percentile(ms, 90)),
            "float_ms_median": float(np.median(float_ms)),
            "int8_clips_per_s": float(len(ms) / ms.sum() * 1e3), "rows": rows}


def _annotate(frame: np.ndarray, row: dict | None) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    if row is not None:
        draw = ImageDraw.Draw(image)
        i8, fl = row["int8"], row["float"]
        lines = [f"int8 {i8['class']} {i8['confidence']:.0%}  {i8['ms']:.1f} ms",
                 f"float {fl['class']} {fl['confidence']:.0%}",
                 "agree" if row["agree"] else "DISAGREE"]
        h = 12 * len(lines) + 4
        draw.rectangle((0, 0, image.width, h), fill=(0, 0, 0))
        for k, text in enumerate(lines):
            draw.text((3, 2 + 12 * k), text, fill=(255, 255, 255) if row["agree"] or k < 2
                      else (255, 80, 80))
    return np.asarray(image)


def _write_outputs(stage: Path, display, rows, pre, fps, summary) -> None:
    from convdeploy.models.clips import write_clip

    from .files import write_text_atomic

    span = (pre.frames - 1) * pre.frame_stride + 1
    current = [None] * len(display)
    for row in rows:  # each frame shows the latest window that ends at or before it
        for f in range(row["start_frame"] + span - 1, len(display)):
            current[f] = row
    annotated = np.stack([_annotate(f, r) for f, r in zip(display, current)])
    write_clip(stage / "demo.mp4", annotated, fps=max(1, round(fps)))
    step = max(1, len(annotated) // 80)  # a preview: at most ~80 frames, 240 px wide
    write_clip(stage / "demo.gif", _shrink(annotated[::step], 240), fps=max(1, round(fps / step)))
    write_text_atomic(stage / "demo.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(stage / "demo.html", _html(summary, _plot(rows)))


def _shrink(frames: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    if frames.shape[2] <= width:
        return frames
    height = round(frames.shape[1] * width / frames.shape[2]) // 2 * 2
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
                     for f in frames])


def _plot(rows) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted({r[k]["class"] for r in rows for k in ("float", "int8")})
    x = [r["start_frame"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for key, marker in (("float", "o"), ("int8", "x")):
        ax1.plot(x, [classes.index(r[key]["class"]) for r in rows], marker, label=key)
    ax1.set_yticks(range(len(classes)), classes, fontsize=7)
    ax1.set_title("prediction per window")
    ax1.legend()
    ax2.plot(x, [r["int8"]["ms"] for r in rows], label="int8")
    ax2.plot(x, [r["float"]["ms"] for r in rows], label="float")
    ax2.set_ylabel("ms per window")
    ax2.set_xlabel("first frame of the window")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _html(s: dict, plot_png: str) -> str:
    esc = html.escape
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>convdeploy video demo
</title></head><body style="font-family:sans-serif;max-width:960px">
<h1>Video demo: {esc(s['model'])} int8 on {esc(s['target'])}</h1>
<p>Source: {esc(str(s['source']))}; {s['windows']} windows (hop {s['hop']} frames);
float/int8 agreement {s['agreement']:.1%}; int8 latency median {s['int8_ms_median']:.2f} ms,
p90 {s['int8_ms_p90']:.2f} ms ({s['int8_clips_per_s']:.1f} clips/s, {s['threads']} threads);
float median {s['float_ms_median']:.2f} ms.</p>
<video src="demo.mp4" controls autoplay muted loop style="max-width:100%"></video>
<p><img alt="timeline" src="data:image/png;base64,{plot_png}" style="max-width:100%"></p>
</body></html>
"""
