"""Where the audit's units run: a local process pool (default) or a Ray cluster.

Both take the same plain functions and arguments. ``parallel`` runs units side by side (the
accuracy work: its numbers do not depend on what runs beside it); ``serial`` runs one unit at
a time with nothing else of the sweep running (latency: honest timings need an idle machine).
Results come back as each unit finishes, so the sweep writes it at once.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from convdeploy.errors import ConvdeployError

Job = tuple[Any, Callable, tuple]  # (unit, function, arguments)


@dataclass(frozen=True)
class Outcome:
    unit: Any
    result: dict | None
    error: str | None


class Executor(Protocol):
    name: str

    def parallel(self, jobs: list[Job]) -> Iterator[Outcome]: ...

    def serial(self, jobs: list[Job]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


def _call(fn: Callable, args: tuple) -> dict:
    import warnings

    # a spawned worker does not inherit the CLI's filters: torch's deprecation chatter would
    # interleave with the progress bar
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    t0 = time.perf_counter()
    result = fn(*args)
    return {**result, "unit_seconds": time.perf_counter() - t0}


def _error_text(exc: BaseException) -> str:
    text = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}".strip()[:2000]


class LocalExecutor:
    """A process pool of ``workers`` for parallel units; a fresh single process for each
    serial phase (nothing else of the sweep runs meanwhile)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def _pool(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child of a process that has started torch/OpenMP threads can hang
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def _run(self, jobs: list[Job], workers: int) -> Iterator[Outcome]:
        from concurrent.futures import as_completed

        if not jobs:
            return
        with self._pool(min(workers, len(jobs))) as pool:
            futures = {pool.submit(_call, fn, args): unit for unit, fn, args in jobs}
            try:
                for future in as_completed(futures):
                    exc = future.exception()
                    yield Outcome(futures[future], None if exc else future.result(),
                                  _error_text(exc) if exc else None)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def parallel(self, jobs: list[Job]) -> Iterator[Outcome]:
        return self._run(jobs, self.workers)

    def serial(self, jobs: list[Job]) -> Iterator[Outcome]:
        return self._run(jobs, 1)

    def close(self) -> None:
        pass


class RayExecutor:
    """Plain Ray tasks (no Ray Tune). With ``address`` the driver joins that cluster. Without
    one it starts a local cluster that listens on loopback only, dashboard off, session files
    in a temporary folder and its auth token in the environment (not ``~/.ray``). Each task
    asks for one CPU per thread it uses and sets its thread count itself (Ray's
    OMP_NUM_THREADS follows ``num_cpus``)."""

    name = "ray"

    # Ray 2.60 binds its servers to the node's network address, and turns a requested
    # 127.0.0.1 into that address; in its single-machine mode (the one it uses on macOS and
    # Windows) the node address is loopback and every server listens there (checked with ss
    # in tests/audit/test_ray.py).
    # Ray also renices its workers to 15 (RAY_worker_niceness): a timed task would then yield
    # to any other process, so a cluster started here keeps them at the driver's priority.
    LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_worker_niceness": "0"}

    def __init__(self, workers: int, address: str | None = None,
                 cpus: int | None = None) -> None:
        import secrets
        import tempfile

        self._saved_env: dict[str, str | None] = {}
        self._tmp: str | None = None
        already_imported = "ray" in sys.modules
        if not address:
            env = {**self.LOOPBACK_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(16)}
            self._saved_env = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
        try:
            import ray
        except ImportError as exc:
            self._restore_env()
            raise ConvdeployError("the Ray executor needs ray",
                                  fix='pip install "convdeploy[ray]"') from exc
        self.ray = ray
        self.workers = max(1, workers)
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            if already_imported:  # ray read its settings before the environment was set
                _refresh_ray_settings()
            self._tmp = tempfile.mkdtemp(prefix="convdeploy-ray-")
            ray.init(num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False,
                     _temp_dir=self._tmp, log_to_driver=False)
        self._remote = ray.remote(_call)

    def _restore_env(self) -> None:
        if not self._saved_env:
            return
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _run(self, jobs: list[Job], cpus: Callable[[Any], int],
             at_once: int) -> Iterator[Outcome]:
        ray = self.ray
        pending = list(jobs)
        running: dict[Any, Any] = {}
        while pending or running:
            while pending and len(running) < at_once:
                unit, fn, args = pending.pop(0)
                ref = self._remote.options(num_cpus=cpus(unit), max_retries=0).remote(fn, args)
                running[ref] = unit
            done, _ = ray.wait(list(running), num_returns=1)
            unit = running.pop(done[0])
            try:
                yield Outcome(unit, ray.get(done[0]), None)
            except Exception as exc:  # noqa: BLE001 - a task's error is the unit's result
                cause = getattr(exc, "cause", None) or exc
                yield Outcome(unit, None, _error_text(cause))

    def parallel(self, jobs: list[Job]) -> Iterator[Outcome]:
        return self._run(jobs, lambda unit: 1, self.workers)

    def serial(self, jobs: list[Job]) -> Iterator[Outcome]:
        return self._run(jobs, lambda unit: getattr(unit, "threads", 1), 1)

    def close(self) -> None:
        import shutil

        self.ray.shutdown()
        self._restore_env()
        if self._tmp:  # the local cluster's session files (logs, sockets)
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._saved_env and "ray" in sys.modules:
            _refresh_ray_settings()


def _refresh_ray_settings() -> None:
    """Make an already imported ray re-read the environment: its single-machine switch and its
    authentication settings (what ray's own test helpers do: ``reset_auth_token_state``)."""
    import ray._private.ray_constants as constants
    from ray._raylet import AuthenticationTokenLoader, Config

    constants.ENABLE_RAY_CLUSTER = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0"
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def make_executor(name: str, workers: int, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise ConvdeployError("--address applies to the Ray executor only",
                                  fix="add --executor ray, or drop --address")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise ConvdeployError(f"unknown executor {name!r}", fix="choose local or ray")
