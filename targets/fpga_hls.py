"""``fpga-hls``: the model as generated HLS C++ (``exporters.hls_writer``), C-simulated with g++.

``compile()`` writes the project (beside the run's other outputs: ``OUT/fpga-hls/<artifact>``),
chooses the folding from the analytical estimate (``exporters.hls_estimate``), builds the
C-simulation into a shared library (C++17, -O2, OpenMP over samples) called through ctypes on
whole batches, and proves the build before returning it: a standalone testbench executable runs
seeded input codes against the integer reference's outputs and exits non-zero on any mismatch;
on a mismatch the per-op trace names the first layer that diverges. Synthesis scripts
(Vitis HLS, Vivado) are written, not run.
"""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.errors import ConvdeployError
from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.exporters.hls_config import FpgaConfig

from .base import RuntimeOptions, TargetBase

CXX_FLAGS = ("-std=c++17", "-O2", "-fopenmp", "-Wall", "-Wno-unused-variable",
             "-Wno-unknown-pragmas", "-Wno-unused-label")
# Every generated library defines the same names (convdeploy_model::l0_..._config, ...): two
# models loaded in one process must not share any of them. GCC makes template statics
# STB_GNU_UNIQUE (merged across libraries even with RTLD_LOCAL) and exports everything by
# default, so the library hides all but its C entry points and binds its own symbols.
LIBRARY_FLAGS = ("-fPIC", "-fno-gnu-unique", "-fvisibility=hidden", "-fvisibility-inlines-hidden")
TESTBENCH_SAMPLES = 16


def compiler() -> str | None:
    return shutil.which("g++")


def ap_types_dir() -> Path | None:
    """Xilinx's ap_types headers (simulation copies, Apache-2.0) as hls4ml's wheel ships them
    (``pip install --no-deps hls4ml``); synthesis uses the vendor tool's own."""
    import importlib.util

    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
    return path if (path / "ap_int.h").exists() else None


def build(project: Path, *, defines: tuple[str, ...] = (), include: tuple[Path, ...] = (),
          timeout: float = 900) -> tuple[Path, Path, float]:
    """Compile ``project``'s C-simulation library and testbench; (library, testbench, s)."""
    cxx = compiler()
    if cxx is None:
        raise ConvdeployError("g++ is not installed", fix="install g++ (apt install g++)")
    flags = [*CXX_FLAGS, *(f"-D{d}" for d in defines), *(f"-I{p}" for p in include)]
    top = project / "firmware" / "model_top.cpp"
    t0 = time.perf_counter()
    obj = project / "build" / "model_top.o"
    obj.parent.mkdir(exist_ok=True)
    lib = project / "build" / "libmodel.so"
    tb = project / "build" / "testbench"
    steps = [[cxx, *flags, *LIBRARY_FLAGS, "-c", str(top), "-o", str(obj)],
             [cxx, *flags, *LIBRARY_FLAGS, "-shared", "-Wl,-Bsymbolic",
              str(project / "bridge.cpp"), str(obj), "-o", str(lib)],
             [cxx, *flags, str(project / "tb" / "testbench.cpp"), str(obj), "-o", str(tb)]]
    for cmd in steps:  # argument lists, no shell: nothing from the model reaches a shell
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=project)
        if done.returncode != 0:
            raise ConvdeployError(f"g++ failed on the generated project {project}: "
                                  f"{done.stderr.strip()[-2000:]}",
                                  fix="report this with the project folder attached")
    # named by its content: dlopen hands back an already-loaded library for a known path, so
    # a rebuilt project must not reuse its predecessor's file name in the same process
    digest = hashlib.sha256(lib.read_bytes()).hexdigest()[:16]
    named = lib.with_name(f"libmodel-{digest}.so")
    lib.replace(named)
    return named, tb, time.perf_counter() - t0


@dataclass
class HlsRunnable:
    """The C-simulation library: float inputs quantized as the model's QUANTIZE does, whole
    batches through the generated top function, codes dequantized as its DEQUANTIZE does."""

    graph: Any  # OpGraph
    project: Any  # exporters.hls_writer.HlsProject
    library: Path
    threads: int = 1
    details: dict[str, Any] = field(default_factory=dict)
    _lib: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._lib = ctypes.CDLL(str(self.library))
        self._lib.cd_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                     ctypes.c_int]

    def input_codes(self, x: np.ndarray) -> np.ndarray:
        from .int_reference import _quantize

        first = self.graph.ops[0]
        return _quantize(first, {first.inputs[0]: np.asarray(x, dtype=np.float32)},
                         self.graph.quant, None)

    def run_codes(self, codes: np.ndarray) -> np.ndarray:
        """Output codes of the top function for a batch of input codes."""
        from convdeploy.exporters.hls_writer import numpy_dtype

        p = self.project
        x = np.ascontiguousarray(codes, dtype=numpy_dtype(p.input_q)).reshape(len(codes), -1)
        if x.shape[1] != p.input_size:
            raise ValueError(f"input codes of {x.shape[1]} values, the model takes "
                             f"{p.input_size}")
        y = np.empty((len(x), p.output_size), dtype=numpy_dtype(p.output_q))
        self._lib.cd_run(x.ctypes.data, y.ctypes.data, len(x), self.threads)
        return y

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        codes = self.run_codes(self.input_codes(x)).astype(np.int64)
        q = self.project.output_q
        out = (codes - q.zero_point).astype(np.float32) * np.float32(q.scale)
        return {self.graph.output: out.reshape(len(x), *self._output_shape())}

    def _output_shape(self) -> tuple[int, ...]:
        from convdeploy.exporters.opgraph import infer_shapes

        return infer_shapes(self.graph)[self.graph.output][1:]

    def trace(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output codes for one sample (C-simulation only), by tensor name."""
        from convdeploy.exporters.hls_writer import numpy_dtype
        from convdeploy.exporters.opgraph import infer_shapes

        shapes = infer_shapes(self.graph)
        seen: dict[str, np.ndarray] = {}
        names = self.project.traced

        def hook(index, data, size):
            name = names[index]
            dtype = numpy_dtype(self.graph.quant[name])
            raw = ctypes.string_at(data, size)
            seen[name] = np.frombuffer(raw, dtype=dtype).astype(np.int64).reshape(shapes[name])

        callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int)(hook)
        self._lib.cd_set_trace(callback)
        try:
            self.run_codes(codes[:1])
        finally:
            self._lib.cd_set_trace(None)
        return seen


def first_divergence(runnable: HlsRunnable, reference: Any, codes: np.ndarray) -> str | None:
    """The first layer whose output differs from the integer reference's, for one sample."""
    got = runnable.trace(codes)
    want = reference.codes_from(runnable.project.input_tensor, codes[:1])
    for layer in runnable.project.layers:
        name = layer.op.output
        if not np.array_equal(got[name], want[name]):
            diff = int(np.abs(got[name] - want[name]).max())
            return (f"layer {layer.index} {layer.op.name} ({layer.op.kind.value}) differs "
                    f"from the integer reference by up to {diff} LSB")
    return None


class FpgaHlsTarget(TargetBase):
    name = "fpga-hls"
    description = ("generated HLS C++ (Vitis HLS style), C-simulated with g++: equals "
                   "int-reference bit for bit; synthesis scripts and an analytical estimate")
    formats = (ArtifactFormat.ONNX,)
    weight_bits = (4, 8)
    activation_bits = (4, 8, 16)
    runs_float = False
    lowers_graph = True  # its ops come from exporters/lowering.py (checked before calibration)
    latency_not_meaningful = ("C-simulation on the host CPU says nothing about FPGA latency: "
                              "see the analytical estimate")
    config: FpgaConfig = FpgaConfig()

    def configured(self, config: FpgaConfig) -> "FpgaHlsTarget":
        target = FpgaHlsTarget()
        target.config = config
        return target

    def unavailable(self) -> str | None:
        if compiler() is None:
            return "g++ is not installed (apt install g++): C-simulation needs it"
        return None

    def check_ops(self, artifact: Artifact) -> list[str]:
        from convdeploy.exporters.hls_writer import check_graph
        from convdeploy.exporters.lowering import LoweringError, lower_file

        try:
            graph = lower_file(artifact.path)
        except LoweringError as exc:
            return [str(exc)]
        return check_graph(graph)

    def compile(self, artifact: Artifact, workdir: Path, *,
                options: RuntimeOptions = RuntimeOptions()) -> HlsRunnable:
        from convdeploy.exporters import hls_estimate, hls_scripts
        from convdeploy.exporters.hls_writer import write_project
        from convdeploy.exporters.lowering import lower_file

        from .int_reference import IntegerRunnable

        graph = lower_file(artifact.path)
        keep = Path(options.keep_dir or workdir)
        project_dir = keep / "fpga-hls" / Path(artifact.path).stem
        t0 = time.perf_counter()
        estimate = hls_estimate.estimate(graph, self.config)
        project = write_project(graph, project_dir, config=self.config,
                                folding=estimate.folding)
        reference = IntegerRunnable(graph)
        codes, expected = testbench_vectors(project, reference)
        hls_scripts.write(project, self.config, estimate, codes, expected)
        generate_s = time.perf_counter() - t0
        library, testbench, compile_s = build(project_dir)
        runnable = HlsRunnable(graph, project, library, options.threads)
        verdict = run_testbench(testbench)
        if verdict.returncode != 0:
            where = first_divergence(runnable, reference, codes)
            raise ConvdeployError(f"fpga-hls C-simulation of {artifact.name} differs from the "
                                  f"integer reference: {verdict.stdout.strip()[-300:]}; {where}",
                                  fix="report this with the project folder attached")
        runnable.details.update({
            "runtime": f"g++ C-simulation ({' '.join(CXX_FLAGS[:2])}, OpenMP)",
            "project": str(project_dir.relative_to(keep)),
            "layers": len(project.layers), "rewritten_2d": graph.rewrites(),
            "generate_seconds": round(generate_s, 2),
            "compile_seconds": round(compile_s, 2),
            "testbench": verdict.stdout.strip().splitlines()[-1],
            "estimate": estimate.to_dict(), "synthesis": hls_scripts.synthesis_results(
                project_dir)})
        return runnable


def testbench_vectors(project, reference, samples: int = TESTBENCH_SAMPLES, seed: int = 0):
    """Seeded random input codes over the input's whole range, and the integer reference's
    output codes for them (the testbench's expected values)."""
    rng = np.random.default_rng(seed)
    q = project.input_q
    codes = rng.integers(q.qmin, q.qmax + 1, size=(samples, project.input_size))
    shape = (samples, *reference.input_shape_of(project.input_tensor))
    expected = reference.codes_from(project.input_tensor, codes.reshape(shape))
    return codes.reshape(shape), expected[project.output_tensor].reshape(samples, -1)


def run_testbench(testbench: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(testbench)], capture_output=True, text=True, timeout=600,
                          cwd=testbench.parent.parent)
