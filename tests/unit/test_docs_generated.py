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


def test_a_benchmarks_own_results_do_not_mark_its_revision_changed(tmp_path):
    """A bench rewrites its results file after each model and resumes only on the same
    revision: its own output must not turn the revision into "+changes"; code must."""
    from convdeploy.report import source_revision

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "bench/results").mkdir(parents=True)
    (tmp_path / "bench/results/tune.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "c")
    head = source_revision(tmp_path)
    assert head and "+" not in head
    (tmp_path / "bench/results/tune.json").write_text('{"runs": []}')
    assert source_revision(tmp_path / "bench") == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert source_revision(tmp_path) == head + "+changes"
