"""Where the time goes: a runtime's kernel times mapped to the exported graph's layers, with
each layer's roofline bound and efficiency (Lavin 2024: latency = complexity /
(efficiency x peak)).

Times: the latency is an unprofiled measurement; a profiler's own cost inflates what it
records (ONNX Runtime's doubles a ResNet-20 run at batch 1). That cost is per event, so the
profiled run's excess over the latency is taken off each kernel event (with its dispatch) in
equal parts, not in proportion: scaling every kernel by one ratio made the long convolutions
too fast and left the short kernels most of their inflation. Where the kernels time themselves
and the profiler's cost falls between them (OpenVINO's performance counters: a ResNet-20 int8
run goes from 206 to 231 us with them on) the kernel times are kept as recorded. A layer's
time includes the runtime's dispatch of its node where the runtime's timeline shows it (the
gap since the previous kernel ended; OpenVINO's, measured on the model's prefixes, capped at
what the latency leaves after the kernels and the per-inference cost). Its efficiency uses the kernel's own recorded time less
the part of the profiler's cost surely inside the kernel records (their sum's excess over the
latency, per event; ORT at batch 1: 1.3-2.2x on ResNet-20), never above the layer's time
(with proportional scaling ResNet-20's float convolutions reached 1.15 of the measured peak).
A runtime's per-inference cost, measured on a one-op model, is a row of its own; what nothing
accounts for is unattributed, never spread over layers.

Bounds: a layer cannot run faster than ``max(MACs / peak, bytes / bandwidth)`` with the peak
and bandwidth this runtime reached on this machine for the kernel's dtype (``peak.py``); the
waterline is the sum of the bounds over the kernel sequence. Efficiency is the achieved
MAC rate over the peak; a layer above 1 means the peak was under-measured and is flagged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .costs import GraphIndex, LayerCost, module_of
from .peak import Peak
from .timeline import KernelTime, Timeline


@dataclass(frozen=True)
class LayerTime:
    layer: str
    op: str
    kernels: tuple[str, ...]  # the runtime's kernels counted here
    dtype: str
    ms: float  # share of the unprofiled latency, the runtime's dispatch of the node included
    macs: int
    bytes: float
    bound_ms: float
    bound: str  # "compute" | "memory" | "" (no cost model: runtime-only kernel)
    gmacs: float  # achieved, over the kernels' own time (no dispatch)
    efficiency: float | None  # achieved / peak (None: no MACs)
    compute_ms: float = 0.0  # the kernels' own share, without the dispatch before them

    @property
    def intensity(self) -> float:
        return self.macs / self.bytes if self.bytes else 0.0


@dataclass(frozen=True)
class EfficiencyProfile:
    """One (artifact, target, threads, batch) cell's per-layer view."""

    model: str
    precision: str
    target: str
    threads: int
    batch: int
    latency_ms: float  # unprofiled median
    layers: tuple[LayerTime, ...]
    unattributed_ms: float
    peaks: dict[str, Peak]  # per dtype
    method: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def attributed_ms(self) -> float:
        return sum(x.ms for x in self.layers)

    @property
    def waterline_ms(self) -> float:
        return sum(x.bound_ms for x in self.layers)

    @property
    def macs(self) -> int:
        return sum(x.macs for x in self.layers)

    @property
    def model_efficiency(self) -> float:
        """The whole model's MAC rate over the peak of its main dtype (the efficiency gap)."""
        peak = self.peaks.get(self.main_dtype)
        return self.macs / self.latency_ms / 1e6 / peak.gmacs if peak and peak.gmacs else 0.0

    @property
    def main_dtype(self) -> str:
        weights: dict[str, int] = {}
        for x in self.layers:
            weights[x.dtype] = weights.get(x.dtype, 0) + x.macs
        return max(weights, key=weights.get) if weights else "float"

    @classmethod
    def from_dict(cls, d: dict) -> "EfficiencyProfile":
        """The inverse of ``to_dict`` (the audit keeps profiles as JSON in its cells)."""
        names = set(cls.__dataclass_fields__)
        layers = tuple(LayerTime(**{**{k: v for k, v in x.items() if k != "intensity"},
                                    "kernels": tuple(x["kernels"])}) for x in d["layers"])
        peaks = {k: Peak(v["gmacs"], tuple(tuple(b) for b in v["bandwidth"]), v["source"])
                 for k, v in d["peaks"].items()}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "layers": layers,
                      "peaks": peaks, "warnings": tuple(d.get("warnings", ()))})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [{**asdict(x), "intensity": round(x.intensity, 3)} for x in self.layers]
        d.update(attributed_ms=self.attributed_ms, waterline_ms=self.waterline_ms,
                 macs=self.macs, model_efficiency=self.model_efficiency,
                 main_dtype=self.main_dtype)
        return d


def layer_of_kernel(kernel: KernelTime, index: GraphIndex) -> str | None:
    """The exported layer a runtime kernel computes, from what the kernel still carries:
    an owned weight/bias initializer (survives every fusion and renaming seen here), the
    exported node or tensor names it covers, or a name prefix (runtimes append ``_token_4``,
    ``/WithoutBiases``, ``_nchwc``). Layout conversions the runtime inserted (OpenVINO's
    ``Reorder`` named after the tensors it joins, ORT's NCHWc ``ReorderInput``) stay
    runtime kernels unless the runtime names them as an exported node."""
    layers = set(index.layer_of_node.values())
    for init in kernel.initializers:
        module = module_of(init)
        if module and module in layers:
            return module
    names = (*kernel.originals, kernel.name)
    found = [index.layer_of_node[n] for n in names if n in index.layer_of_node]
    found += [x for t in (*kernel.tensors, *names) if (x := index.layer_of_tensor(t))]
    if not found and not kernel.kernel.split(":")[0].startswith(_LAYOUT):
        for name in names:
            found += [index.layer_of_node[n] for n in index.nodes_by_length
                      if name.startswith(n) and name[len(n):len(n) + 1] in ("/", "_", ".")][:1]
    if found:
        return next((x for x in found if not _unweighted(x)), found[0])
    quantizers = [index.quantizer_nodes[n] for n in names if n in index.quantizer_nodes]
    return quantizers[0] if quantizers else None


_LAYOUT = ("Reorder", "Transpose")


def _unweighted(layer: str) -> bool:
    return " " in layer  # "OpType node" names; module paths have no spaces


def analyse(timeline: Timeline, index: GraphIndex, costs: list[LayerCost], *,
            latency_ms: float, peaks: dict[str, Peak], model: str, precision: str,
            target: str, threads: int, batch: int) -> EfficiencyProfile:
    """Join kernel times to layer costs (see the module doc)."""
    by_layer: dict[str, list[KernelTime]] = {}
    for k in timeline.kernels:
        layer = layer_of_kernel(k, index) or f"(runtime) {k.kernel} {k.name}"
        by_layer.setdefault(layer, []).append(k)
    cost_of = {c.layer: c for c in costs}
    scaling = _Scaling.of(timeline, latency_ms)
    rows, warnings = [], []
    for c in costs:  # the graph's order, then what only the runtime has
        kernels = by_layer.pop(c.layer, [])
        rows.append(_row(c.layer, c, kernels, scaling, peaks, warnings))
    for layer, kernels in by_layer.items():
        rows.append(_row(layer, cost_of.get(layer), kernels, scaling, peaks,
                         warnings))
    if timeline.per_inference_ms > 0:
        per_run = min(timeline.per_inference_ms, latency_ms - sum(r.ms for r in rows))
        rows.append(LayerTime("(runtime) per-inference cost, one-op model", "", ("",),
                              "", max(0.0, per_run), 0, 0.0, 0.0, "", 0.0, None, 0.0))
    missing = [c.layer for c in costs if c.weighted and not any(
        r.layer == c.layer and r.kernels for r in rows)]
    if missing:
        warnings.append(f"no {target} kernel was mapped to {len(missing)} weighted layer(s): "
                        f"{', '.join(missing[:5])}")
    unattributed = latency_ms - sum(r.ms for r in rows)
    return EfficiencyProfile(model, precision, target, threads, batch, latency_ms,
                             tuple(r for r in rows if r.kernels or r.macs),
                             unattributed, peaks, timeline.method, tuple(warnings))


_FLOOR = 0.1  # a kernel shorter than the profiler's cost per event keeps a tenth of its record


@dataclass(frozen=True)
class _Scaling:
    """From a profiled run's kernel records to times in the unprofiled latency."""

    per_event: float  # profiler time per kernel event, off each kernel and its dispatch
    in_kernel: float  # the part of it surely inside the kernel records, off their compute
    ratio: float  # self-timed kernels: kept (1), or scaled down if they pass the latency
    # a compute time is never shrunk below its record scaled by latency / kernel sum (the
    # proportional estimate): a tiny kernel floored by the per-event subtraction alone showed
    # 4x the peak (LiteRT's isolated linear layer, before isolated times were kept as measured)
    proportional: float = 1.0
    # self-timed kernels: the dispatch measured beside them (OpenVINO's prefixes, timed apart
    # from the latency) is capped at what the latency leaves after the kernels and the
    # per-inference cost (ResNet-20 float, 1 thread: the prefix rounds found 123 us outside
    # the counters where the latency, timed a minute earlier, left 71)
    dispatch_ratio: float = 1.0

    @classmethod
    def of(cls, timeline: Timeline, latency_ms: float) -> "_Scaling":
        events = len(timeline.kernels)
        if not timeline.kernels_inflated or not events:
            ratio = min(1.0, latency_ms / timeline.kernel_ms) if timeline.kernel_ms > 0 else 0
            dispatch = sum(k.dispatch_ms for k in timeline.kernels)
            left = latency_ms - timeline.kernel_ms * ratio - timeline.per_inference_ms
            return cls(0.0, 0.0, ratio,
                       dispatch_ratio=min(1.0, max(0.0, left) / dispatch) if dispatch else 1.0)
        return cls(max(0.0, timeline.run_ms - latency_ms) / events,
                   max(0.0, timeline.kernel_ms - latency_ms) / events, 1.0,
                   min(1.0, latency_ms / timeline.kernel_ms) if timeline.kernel_ms > 0 else 0)

    def ms(self, k: KernelTime) -> float:
        t = k.ms * self.ratio + k.dispatch_ms * self.dispatch_ratio
        return max(t - self.per_event, _FLOOR * t)

    def compute_ms(self, k: KernelTime) -> float:
        return max(k.ms * self.ratio - self.in_kernel, k.ms * self.ratio * self.proportional)


def _row(layer: str, cost: LayerCost | None, kernels: list[KernelTime],
         scaling: _Scaling, peaks: dict[str, Peak], warnings: list[str]) -> LayerTime:
    ms = sum(scaling.ms(k) for k in kernels)
    compute_ms = min(sum(scaling.compute_ms(k) for k in kernels), ms)
    dtype = max(kernels, key=lambda k: k.ms).dtype if kernels else "float"
    peak = peaks.get(dtype) or peaks.get("float")
    macs = cost.macs if cost else 0
    nbytes = cost.bytes if cost else 0.0
    compute = macs / peak.gmacs / 1e6 if peak and peak.gmacs else 0.0
    gbytes = peak.gbytes(nbytes) if peak else 0.0
    memory = nbytes / gbytes / 1e6 if gbytes else 0.0
    gmacs = macs / compute_ms / 1e6 if compute_ms > 0 else 0.0
    efficiency = gmacs / peak.gmacs if macs and peak and peak.gmacs and compute_ms > 0 \
        else None
    if efficiency is not None and efficiency > 1:
        warnings.append(f"{layer} reached {gmacs:.1f} GMAC/s, above the {dtype} peak "
                        f"{peak.gmacs:.1f} ({peak.source}): the peak is under-measured")
    bound = "" if cost is None else ("compute" if compute >= memory else "memory")
    op = cost.op if cost else (kernels[0].kernel if kernels else "")
    return LayerTime(layer, op, tuple(k.name for k in kernels), dtype, ms, macs, nbytes,
                     max(compute, memory), bound, gmacs, efficiency, compute_ms)
