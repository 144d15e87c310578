"""``dsp-qnn-htp``: QDQ ONNX on Qualcomm's Hexagon Tensor Processor through ``onnxruntime-qnn``.

On x86 Linux the wheel ships ``libQnnHtp.so``, an emulator of the HTP: the same graph
preparation and integer kernels as the phone's DSP, run on the CPU (no phone here). The session
is created with CPU fallback disabled, so a model runs wholly on the HTP or ``check()`` names
the nodes it rejects (from the EP's own validation log). The HTP needs static shapes: the model
is compiled for a fixed batch and a short last batch is padded. Latency is not reported: the emulator's timings say nothing about a phone.
Its constraints (uint8/uint16
activations, int8 symmetric weights) are the ``w8a8`` preset; ``w8a16`` where a layer needs
16-bit activations.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.exporters.artifact import Artifact, ArtifactFormat

from .base import RuntimeOptions, TargetBase

EP = "QNNExecutionProvider"
_FAILED = re.compile(r"Validation FAILED for \d+ nodes in OrtNodeUnit \((\w+)\)[^\n]*\n"
                     r"(?:\s*Operator type:[^\n]*Node name: ([^\n]*?) Node index[^\n]*\n)*"
                     r"\s*REASON : ([^\n]*)")


def _static_copy(path: Path, batch: int, workdir: Path) -> Path:
    """The model with its batch dimension fixed (the HTP compiles static shapes only)."""
    import onnx

    model = onnx.load(str(path))
    _per_axis_weights(model)
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = batch
    model = onnx.shape_inference.infer_shapes(model)
    out = Path(workdir) / f"{path.stem}.batch{batch}.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _per_axis_weights(model) -> int:
    """Per-tensor weight DequantizeLinear nodes rewritten per output channel, every channel
    with the same scale and zero point: the same numbers (the Encodings'), in the form the HTP
    runs correctly. Measured with onnxruntime-qnn 2.7: the emulator returns wrong outputs for
    per-tensor int8 weights (the demo model: 12% instead of 99%, 255 LSB from the integer
    reference), and right ones for the same weights written per axis."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits \
                or len(node.input) < 3 or node.input[1] not in inits:
            continue
        codes = inits[node.input[0]]
        scale = numpy_helper.to_array(inits[node.input[1]])
        zero = numpy_helper.to_array(inits[node.input[2]])
        if len(codes.dims) < 2 or scale.ndim != 0:
            continue  # activations, biases and per-channel weights stay as they are
        channels = codes.dims[0]
        names = (f"{node.input[1]}.per_axis", f"{node.input[2]}.per_axis")
        if names[0] not in inits:
            for name, value in zip(names, (np.full(channels, scale, scale.dtype),
                                           np.full(channels, zero, zero.dtype))):
                inits[name] = numpy_helper.from_array(value, name)
                model.graph.initializer.append(inits[name])
        node.input[1], node.input[2] = names
        node.attribute.append(helper.make_attribute("axis", 0))
        rewritten += 1
    return rewritten


@contextlib.contextmanager
def _native_stderr_to(path: Path):
    """The EP logs from C++ to file descriptor 2; capture it for the validation reasons."""
    saved = os.dup(2)
    with open(path, "w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_CLAIMED: list = []  # [(core, open lock file)]: this process's core, held until it exits


def _claim_core() -> int | None:
    """This process's host core for the emulator: the first core of its allowed set whose
    lock (``$TMPDIR/convdeploy-htp-core-N.lock``, ``flock``) no other process holds, so
    emulator sessions in different processes (an audit's workers, Ray tasks) take different
    cores. Per process, not per session: the emulator's helper threads are started once per
    process (a second session reuses them, seen with onnxruntime-qnn 2.7) and keep the core
    they were started on. The lock goes with the process. With every core taken, one by the
    process id (shared); None where affinity cannot be set."""
    import fcntl

    if _CLAIMED:
        return _CLAIMED[0][0]
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    for cpu in allowed:
        handle = open(Path(tempfile.gettempdir()) / f"convdeploy-htp-core-{cpu}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _CLAIMED.append((cpu, handle))
        return cpu
    _CLAIMED.append((allowed[os.getpid() % len(allowed)], None))
    return _CLAIMED[0][0]


@contextlib.contextmanager
def _on_core(cpu: int | None):
    """Run the block, and every thread it starts, on host core ``cpu`` (None: as it is).

    The emulator starts eight helper threads (``thr_hvx_*``) that wait by yielding: measured
    with onnxruntime-qnn 2.7 on ResNet-20 W8A8, one host core gives the same speed (35 ms per
    image) as two, and unpinned they burn the second core in system time (user 6.7 s + sys
    3.9 s for 5.6 s of wall), so two emulator sessions side by side ran no faster than one.
    Threads inherit the affinity of the thread that starts them, so pinning the caller while
    the session is created and run keeps the helpers on its core; the caller's own affinity
    is restored after each block. Outputs do not depend on it (a test compares them)."""
    if cpu is None:
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _session(path: Path, threads: int, verbose: bool = False):
    import onnxruntime as ort
    import onnxruntime_qnn

    if EP not in {d.ep_name for d in ort.get_ep_devices()}:
        ort.register_execution_provider_library(EP, onnxruntime_qnn.get_library_path())
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 0 if verbose else 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP]
    so.add_provider_for_devices(devices, {"backend_path": onnxruntime_qnn.get_qnn_htp_path()})
    return ort.InferenceSession(str(path), so)


@dataclass
class QnnHtpRunnable:
    path: Path
    batch: int
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # threads=1: the emulator on this process's own host core (see _on_core)
        self.core = _claim_core() if self.threads == 1 else None
        with _on_core(self.core):
            self.session = _session(self.path, self.threads)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        x = np.asarray(x, dtype=np.float32)
        outs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            n = len(chunk)
            if n < self.batch:  # static shape: pad, then drop the padding's outputs
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *x.shape[1:]),
                                                        np.float32)])
            with _on_core(self.core):
                outs.append(self.session.run(None, {self.input: chunk})[0][:n])
        return {self.output: np.concatenate(outs)}


class QnnHtpTarget(TargetBase):
    name = "dsp-qnn-htp"
    description = ("Qualcomm Hexagon HTP through onnxruntime-qnn (the x86 wheel's HTP "
                   "emulator); QDQ uint8/uint16 activations, int8 weights")
    formats = (ArtifactFormat.ONNX,)
    runtime_module = "onnxruntime_qnn"
    runtime_package = "onnxruntime-qnn (pip install 'convdeploy[mobile]')"
    weight_bits = (8,)
    activation_bits = (8, 16)
    runs_float = False
    suggested_scheme = "w8a8 (w8a16 for layers that need 16-bit activations)"
    batch = 16
    latency_not_meaningful = "the HTP is emulated on x86: its timings say nothing about a phone"

    def unavailable(self) -> str | None:
        missing = super().unavailable()
        if missing:
            return missing
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            return "the HTP emulator ships for x86-64 Linux only"
        return None

    def check_scheme(self, scheme) -> list[str]:
        reasons = super().check_scheme(scheme)
        if scheme.activations is not None and scheme.activations.signed:
            reasons.append(f"{self.name} needs unsigned (uint8/uint16) activations")
        if not scheme.weights.symmetric:
            reasons.append(f"{self.name} needs symmetric int8 weights")
        return reasons

    def check_ops(self, artifact: Artifact) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="convdeploy-htp-") as tmp:
            static = _static_copy(artifact.path, 1, Path(tmp))
            log = Path(tmp) / "qnn.log"
            try:
                with _native_stderr_to(log):
                    _session(static, 1, verbose=True)
            except Exception as exc:  # noqa: BLE001 - the runtime's own error is the reason
                found = sorted(set(_FAILED.findall(log.read_text(errors="replace"))))
                if found:
                    return [f"the HTP rejects {op} (node {node.strip() or '?'!r}): "
                            f"{reason.strip()}" for op, node, reason in found]
                return [f"the HTP cannot run {artifact.path.name}: "
                        f"{str(exc).strip().splitlines()[-1][:300]}"]
        return []

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> QnnHtpRunnable:
        import onnxruntime_qnn

        static = _static_copy(artifact.path, self.batch, workdir)
        return QnnHtpRunnable(static, self.batch, options.threads,
                              {"runtime": f"onnxruntime-qnn {onnxruntime_qnn.__version__} "
                                          "(libQnnHtp, HTP emulated on x86)",
                               "static_batch": self.batch, "cpu_fallback": "disabled"})
