"""The Ray executor on a real local Ray cluster (no mock): it listens on loopback only, writes
nothing to ~/.ray, and gives the same accuracy figures as the local executor."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from convdeploy.audit import parse_spec, run_audit
from tests.audit.test_sweep import TREE, stable

pytest.importorskip("ray", reason="ray is not installed (pip install 'convdeploy[ray]')")


def _descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc; Ray's raylet and workers included)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def _listening(pids: set[int]) -> list[str]:
    """Local addresses that these processes listen on (TCP and UDP), from ss."""
    out = subprocess.run(["ss", "-H", "-ltunp"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(line.split()[4])
    return found


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_local_cluster_listens_on_loopback_only():
    import os

    from convdeploy.audit.executors import RayExecutor

    home_ray = Path.home() / ".ray"
    existed = home_ray.exists()
    ex = RayExecutor(2, cpus=2)
    try:
        addresses = _listening(_descendants(os.getpid()))
        assert addresses, "found no listening socket of the Ray cluster"
        for address in addresses:
            host = address.rsplit(":", 1)[0].strip("[]")
            assert host in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), addresses
        session = Path(ex._tmp)
        assert session.is_dir()
    finally:
        ex.close()
    assert home_ray.exists() == existed  # nothing written to ~/.ray
    assert not session.exists()  # nor left in the temporary folder


def test_ray_executor_gives_the_local_accuracy_figures(tmp_path):
    local = run_audit(parse_spec(TREE), tmp_path / "local", progress=False)
    remote = run_audit(parse_spec(TREE), tmp_path / "ray", executor="ray", progress=False)
    assert remote.executor == "ray" and remote.failed == 0
    assert sum(remote.computed.values()) == sum(local.computed.values())
    assert stable(remote.cells) == stable(local.cells)
    timed = [c for c in remote.cells if c.get("latency_median_ms")]
    assert timed and all(c["node"] for c in timed)
    assert {c["torch_threads"] for c in timed} == {1, 2}  # set per task, not by Ray
