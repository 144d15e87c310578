"""What this machine's runtimes can reach: peak GMAC/s with convolutions, and memory bandwidth
per working-set size, per target, dtype and thread count, measured by a small set of one-layer
models and cached.

Peak is measured with convolutions, not a GEMM: on this machine ORT's QLinearConv reached 222
GMAC/s on one thread where a 1024^3 MatMulInteger reached 117, and with the GEMM as the peak
real layers showed efficiencies above 1. A conv's time is its marginal cost in a chain of
convs (``measure_peak``). Bandwidth is an elementwise Add at working sets from L1 to DRAM
(bytes read and written per second, one call's cost subtracted), the better of the runtime's
own float Add and numpy's on as many threads: bytes are bytes whatever their dtype. A user may pass datasheet
values instead (``Peak`` is a plain dataclass); figures above them are flagged, never clipped.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convdeploy.files import write_text_atomic

# (C, H = W, kernel, expansion): dense 3x3 convolutions at the sizes ConvNets run (CIFAR's
# few channels at large maps to ImageNet's many at small ones), pointwise ones, and
# inverted-residual pointwise pairs (C -> 6C -> C: MobileNetV2's projection 384 -> 64 at 4x4
# ran 5% above every C -> C conv on LiteRT int8); the best of them is the peak (small ones
# under-use the vector units, the largest spill the caches).
CONV_SHAPES = ((16, 32, 3, 1), (32, 16, 3, 1), (64, 8, 3, 1), (64, 56, 3, 1), (128, 28, 3, 1),
               (256, 14, 3, 1), (512, 7, 3, 1), (256, 14, 1, 1), (64, 16, 1, 1),
               (64, 4, 1, 6), (32, 16, 1, 6))
# Add working sets (elements per operand): a layer's bytes are served by the smallest level
# that holds them, so a CIFAR layer (tens of KB) is bounded by cache, not DRAM, bandwidth.
# The first size measures the runtime's per-call cost, subtracted from the others.
ADD_SIZES = (1 << 4, 1 << 12, 1 << 15, 1 << 18, 1 << 23)
CHAIN = 5  # convs per chain: the peak is a conv's marginal time in it
# a small layer runs nearer the peak in a batch: at batches 1 and 8 only, CIFAR layers at
# batch 32 passed the peak (MobileNetV2 int8 on LiteRT by 5%, ResNet-56 float on OpenVINO by
# 2.5%); a conv of more than MAX_PEAK_MACS per call is saturated already and takes seconds
PEAK_BATCHES = (1, 8, 32)
MAX_PEAK_MACS = 2e9
RECHECKED, RECHECKS = 3, 2  # the fastest shapes, timed this many times more
CACHE_VERSION = 7


@dataclass(frozen=True)
class Peak:
    """One runtime's ceiling on this machine for one dtype and thread count."""

    gmacs: float  # best GMAC/s over CONV_SHAPES
    bandwidth: tuple[tuple[float, float], ...]  # (working-set bytes, GB/s), growing sets
    source: str  # "measured <shape>" or "given"

    def gbytes(self, nbytes: float) -> float:
        """GB/s for a layer moving ``nbytes``: the smallest measured set that holds them."""
        for size, gbs in self.bandwidth:
            if nbytes <= size:
                return gbs
        return self.bandwidth[-1][1] if self.bandwidth else 0.0


def cache_path() -> Path:
    root = Path(os.environ.get("CONVDEPLOY_CACHE", Path.home() / ".cache" / "convdeploy"))
    return root / "peaks.json"


def machine_key() -> str:
    """The CPU the figures belong to (a cache from another machine never answers)."""
    from convdeploy.report import cpu_model

    return f"{cpu_model()} x{os.cpu_count()}"


def _conv_macs(channels: int, size: int, kernel: int, expand: int = 1) -> int:
    """MACs of one conv of the set at batch 1 (a pair's two convs have the same)."""
    return channels * channels * expand * kernel * kernel * size * size


def _conv_model(channels: int, size: int, kernel: int, dtype: str, *, chain: int = 1,
                expand: int = 1, seed: int = 0):
    """``chain`` Conv+ReLU layers in a row: ``channels`` in and out, or with ``expand`` > 1
    alternately ``channels -> expand x channels`` and back (an inverted-residual block's
    pointwise pair: both have the same MACs), sharing one weight tensor per direction (so the
    chain measures compute, not a weight stream larger than the caches that one layer of a
    model would not have): float, or QDQ with uint8 activations and per-channel int8 weights
    (what convdeploy's W8A8 exports), which runtimes fuse into int8 kernels. Returns the
    model and the MACs of one conv at batch 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    pad = kernel // 2
    wide = channels * expand
    out_channels = wide if chain % 2 else channels
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, channels, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                      [None, out_channels, size, size])
    attrs = {"kernel_shape": [kernel, kernel], "pads": [pad] * 4}
    nodes, inits = [], []
    current = "input"
    if dtype != "float":
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "a_s"),
                  numpy_helper.from_array(np.array(0, np.uint8), "a_zp")]
        nodes.append(helper.make_node("QuantizeLinear", ["input", "a_s", "a_zp"], ["q0"],
                                      name="qin"))
        current = "q0"
    directions = ("", "_back") if expand > 1 else ("",)
    for d, (c_out, c_in) in zip(directions, ((wide, channels), (channels, wide))):
        w = rng.standard_normal((c_out, c_in, kernel, kernel)).astype(np.float32) * 0.05
        b = rng.standard_normal(c_out).astype(np.float32) * 0.1
        if dtype == "float":
            inits += [numpy_helper.from_array(w, f"w{d}"), numpy_helper.from_array(b, f"b{d}")]
            continue
        w_scale = np.abs(w).reshape(c_out, -1).max(1) / 127
        inits += [numpy_helper.from_array(np.round(w / w_scale[:, None, None, None])
                                          .astype(np.int8), f"w_q{d}"),
                  numpy_helper.from_array(w_scale.astype(np.float32), f"w_s{d}"),
                  numpy_helper.from_array(np.zeros(c_out, np.int8), f"w_zp{d}"),
                  numpy_helper.from_array(np.round(b / (w_scale * 0.02)).astype(np.int32),
                                          f"b_q{d}"),
                  numpy_helper.from_array((w_scale * 0.02).astype(np.float32), f"b_s{d}"),
                  numpy_helper.from_array(np.zeros(c_out, np.int32), f"b_zp{d}")]
    for i in range(chain):
        last = i == chain - 1
        d = directions[i % len(directions)]
        if dtype == "float":
            out = "output" if last else f"r{i}"
            nodes += [helper.make_node("Conv", [current, f"w{d}", f"b{d}"], [f"c{i}"],
                                       name=f"conv{i}", **attrs),
                      helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}")]
            current = out
            continue
        # every node named: the lowering (exporters/lowering.py) keys ops by node name
        nodes += [helper.make_node("DequantizeLinear", [current, "a_s", "a_zp"], [f"x{i}"],
                                   name=f"dqx{i}"),
                  helper.make_node("DequantizeLinear", [f"w_q{d}", f"w_s{d}", f"w_zp{d}"],
                                   [f"w{i}"], axis=0, name=f"dqw{i}"),
                  helper.make_node("DequantizeLinear", [f"b_q{d}", f"b_s{d}", f"b_zp{d}"],
                                   [f"b{i}"], axis=0, name=f"dqb{i}"),
                  helper.make_node("Conv", [f"x{i}", f"w{i}", f"b{i}"], [f"c{i}"],
                                   name=f"conv{i}", **attrs),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
                  helper.make_node("QuantizeLinear", [f"r{i}", "a_s", "a_zp"], [f"q{i + 1}"],
                                   name=f"q{i}")]
        current = f"q{i + 1}"
    if dtype != "float":
        nodes.append(helper.make_node("DequantizeLinear", [current, "a_s", "a_zp"], ["output"],
                                      name="dqout"))
    graph = helper.make_graph(nodes, "peak_conv", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), \
        _conv_macs(channels, size, kernel, expand)


def _add_model(n: int):
    """An input of ``n`` floats plus a constant of ``n``: 12 bytes of traffic per element
    (a constant operand, not a split input: every runtime and our TFLite writer take it)."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n])
    c = numpy_helper.from_array(np.linspace(-1, 1, n, dtype=np.float32)[None], "c")
    graph = helper.make_graph([helper.make_node("Add", ["input", "c"], ["output"])],
                              "peak_add", [x], [y], [c])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), 12 * n


def _time_model(target, model, workdir: Path, threads: int, shape) -> float:
    """The fastest of >= 0.5 s of runs of ``model`` on ``target``, in ms (after warm-up): a
    ceiling is what the runtime *can* reach, and the layers it is compared with are means."""
    import onnx

    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.latency import time_runs
    from convdeploy.targets.base import RuntimeOptions

    path = workdir / "peak.onnx"
    onnx.save(model, str(path))
    artifact = Artifact("peak", ArtifactFormat.ONNX, "peak", path=path)
    if ArtifactFormat.ONNX not in target.formats:  # LiteRT: the same layer through our writer
        from convdeploy.exporters.tflite_export import TfliteExporter

        artifact = TfliteExporter().export(artifact, workdir)
    runnable = target.compile(artifact, workdir, options=RuntimeOptions(threads=threads))
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    return time_runs(runnable, {"input": x}, warmup=5, repeats=10, min_time_s=0.5)["min"]


def _chain_gmacs(target, dtype: str, threads: int, key: tuple, workdir: Path) -> float:
    """One shape's marginal GMAC/s in a chain (``measure_peak``); 0 where the chain was not
    slower than one conv (noise)."""
    channels, size, kernel, expand, batch = key
    one, macs = _conv_model(channels, size, kernel, dtype, chain=1, expand=expand)
    many, _ = _conv_model(channels, size, kernel, dtype, chain=CHAIN, expand=expand)
    shape = (batch, channels, size, size)
    t_one = _time_model(target, one, workdir, threads, shape)
    t_many = _time_model(target, many, workdir, threads, shape)
    per_conv = (t_many - t_one) / (CHAIN - 1)
    return macs * batch / per_conv / 1e6 if per_conv > 0 else 0.0


def measure_peak(target, dtype: str, threads: int) -> Peak:
    """Run the conv set and the Add on ``target`` and keep the best.

    A conv's time is its *marginal* cost in a chain: (time of CHAIN convs - time of one) /
    (CHAIN - 1). A lone conv also pays its layout conversions and one dispatch, which a layer
    inside a model does not (timed alone, ORT's float 16x32x32 conv reached ~0.8 of what the
    same layer did inside ResNet-20); each shape at ``PEAK_BATCHES`` (a batched layer runs
    nearer the peak), a batch only while a call stays under ``MAX_PEAK_MACS``. The
    ``RECHECKED`` fastest are timed ``RECHECKS`` times more and keep their best: one pass
    put ORT's float peak 6% under the run before, and ResNet-20's 64x8x8 convolutions, the
    very shape of one of the set, at 1.02 of it."""
    with tempfile.TemporaryDirectory(prefix="convdeploy-peak-") as tmp:
        rates = {}
        for channels, size, kernel, expand in CONV_SHAPES:
            for batch in PEAK_BATCHES:
                macs = _conv_macs(channels, size, kernel, expand)
                if batch > 1 and macs * batch > MAX_PEAK_MACS:
                    continue
                key = (channels, size, kernel, expand, batch)
                rates[key] = _chain_gmacs(target, dtype, threads, key, Path(tmp))
        for key in sorted(rates, key=rates.get, reverse=True)[:RECHECKED]:
            for _ in range(RECHECKS):
                rates[key] = max(rates[key], _chain_gmacs(target, dtype, threads, key,
                                                          Path(tmp)))
        (channels, size, kernel, expand, batch), best = max(rates.items(),
                                                            key=lambda kv: kv[1])
        where = (f"conv {channels}{f'<->{channels * expand}' if expand > 1 else ''}"
                 f"x{size}x{size} k{kernel}, batch {batch}")
        times = []
        for n in ADD_SIZES:
            model, nbytes = _add_model(n)
            times.append((nbytes, _time_model(target, model, Path(tmp), threads, (1, n))))
    call_ms = times[0][1]
    plain = _numpy_add_ms(threads)
    levels = tuple((float(nbytes), round(max(nbytes / max(ms - call_ms, 1e-4),
                                             nbytes / max(plain[n] - plain[ADD_SIZES[0]], 1e-4))
                                         / 1e6, 2))
                   for (nbytes, ms), n in zip(times[1:], ADD_SIZES[1:]))
    return Peak(round(best, 2), levels,
                f"measured ({where}; bandwidth: the better of its float Add and numpy's)")


def _numpy_add_ms(threads: int = 1) -> dict[int, float]:
    """The fastest numpy ``a + c`` (into a preallocated output) per ADD_SIZES working set, in
    ms: the machine's plain streaming rate, which a runtime's own elementwise kernel can fall
    short of (OpenVINO's Add streamed ~1/3 of it here; LiteRT's Add runs on one thread)
    while its convolutions do not. The fastest single call, and with ``threads`` > 1 also
    the arrays split over as many threads that each stream their part in a loop (numpy lets
    go of the GIL), whichever is faster: with the one-thread rate alone, MobileNetV2's float
    waterline on LiteRT at 2 threads and batch 32 came out above its measured latency."""
    import time

    out = {}
    for n in ADD_SIZES:
        a, c, o = (np.ones(n, np.float32) for _ in range(3))
        best = float("inf")
        t_end = time.perf_counter() + 0.3
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            np.add(a, c, out=o)
            best = min(best, time.perf_counter() - t0)
        out[n] = best * 1e3
    if threads > 1:
        out = {n: min(ms, split) for (n, ms), split in
               zip(out.items(), _threaded_add_ms(threads).values())}
    return out


def _threaded_add_ms(threads: int) -> dict[int, float]:
    """Per ADD_SIZES working set, the fastest mean time (ms) of ``a + c`` split over
    ``threads`` threads, each looping over its part."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    def stream(a, c, o, repeats):
        for _ in range(repeats):
            np.add(a, c, out=o)

    out = {}
    with ThreadPoolExecutor(threads) as pool:
        for n in ADD_SIZES:
            parts = [[np.ones(len(p), np.float32) for _ in range(3)]
                     for p in np.array_split(np.arange(n), threads)]
            repeats = max(1, (1 << 20) // n)
            best = float("inf")
            t_end = time.perf_counter() + 0.3
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                for job in [pool.submit(stream, *p, repeats) for p in parts]:
                    job.result()
                best = min(best, (time.perf_counter() - t0) / repeats)
            out[n] = best * 1e3
    return out


def _runtime_version(target) -> str:
    from importlib import metadata

    for name in (target.runtime_package, target.runtime_module):
        if name:
            try:
                return metadata.version(name.split()[0])
            except metadata.PackageNotFoundError:
                continue
    return ""


def peak_for(target, dtype: str, threads: int, *, cache: Path | None = None,
             refresh: bool = False) -> Peak:
    """The cached peak for (this machine, target's runtime version, dtype, threads), measured
    on first use (a few seconds per entry)."""
    cache = cache or cache_path()
    runtime = _runtime_version(target)
    key = f"v{CACHE_VERSION}|{machine_key()}|{target.name} {runtime}|{dtype}|{threads}"
    entries = json.loads(cache.read_text()) if cache.exists() else {}
    if key in entries and not refresh:
        e = entries[key]
        return Peak(e["gmacs"], tuple(tuple(x) for x in e["bandwidth"]), e["source"])
    peak = measure_peak(target, dtype, threads)
    entries = json.loads(cache.read_text()) if cache.exists() else {}
    entries[key] = {**asdict(peak), "bandwidth": [list(x) for x in peak.bandwidth]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, json.dumps(entries, indent=1, sort_keys=True))
    return peak
