"""The README's results block and docs/benchmarks.md are generated from bench/results/*.json:
they must equal what bench/render_docs.py makes of the files committed beside them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_docs_are_generated_from_the_result_files():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "render_docs.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
