"""Per-op times on LiteRT: each operator of a ``.tflite`` cut out as a one-op model and timed
alone on the same kernels (XNNPACK) and thread count, then scaled to what its stretch of the
model takes in context.

ai-edge-litert 2.3 exposes no per-op profiler to Python and ``benchmark_model`` ships in no
wheel. Isolation alone misleads: an op run over and over by itself finds its weights in cache,
which in the whole model the other ops' weights have evicted, and at 2 threads it finds the
thread pool in a different state. Measured on this 2-core Xeon (L2 2 MiB), batch 1, isolated
ops less one invoke's own cost, against the whole model's invoke: MobileNetV2 float 76% at 1
thread and 63% at 2 (8.9 MB of weights), int8 86%; ResNet-56 int8 91-96%, ResNet-20 int8
98-106% (0.3 MB). Streaming the model's bytes through the caches before each isolated run
overshot instead (int8 MobileNetV2 126%), and at 2 threads measured the pool waking up (5x).

An op is isolated with what XNNPACK fuses into it: a stride-2 convolution's explicit PAD
(our writer's) is folded into the convolution in the model, but timed alone it copied the
whole padded tensor (MobileNetV2 float at batch 32: PAD+depthwise ~0.5 ms, 6% of their
bound), so a PAD read only by the next convolution is timed together with it
(``fusion_groups``).

So the ops' isolated times give the shares, and the model gives the totals: the model is cut
into ``SEGMENTS`` runs of consecutive ops of about equal isolated time, the model's prefixes
up to each cut are timed (in alternating rounds, a fresh interpreter each: ``prefix_model``),
and each segment's in-context time, the difference of two prefixes, is spread over its ops in
proportion to their isolated times. The ops then sum to the whole model's time less one
invoke's own cost (a one-element ADD, measured alike), which is shown as its own row. The
figures are labelled so wherever they are shown.

A segment's scale is a difference of two noisy times: on this VM a ResNet-20 int8 prefix at
batch 32 (12 ms) spreads by 0.35-0.45 ms (sd) from one window to the next, so the difference
of two 7-round medians is good to ~0.25 ms, a quarter of a 1 ms segment. Taken at face value,
ResNet's last segment came out x0.82-0.86 in every cell of one run and put its convolutions
5% above the peak measured on their own shape. So each segment's scale is shrunk toward the
whole model's (``_scaled``) by how much of its spread from it the timing noise explains
(empirical Bayes: a segment whose scale differs from the model's by more than its noise keeps
most of the difference, as MobileNetV2's float segments, whose weights miss the cache in
context, do).
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from convdeploy.efficiency.timeline import KernelTime, Timeline


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _op_name(model, op, schema) -> str:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")


_PADDED = ("CONV_2D", "DEPTHWISE_CONV_2D")  # kernels XNNPACK folds a preceding PAD into


def fusion_groups(model, schema) -> list[list[int]]:
    """The operators in stored order, each alone, except a PAD whose output only the next
    operator reads, as its first input, that operator a convolution: ``[pad, conv]``."""
    sub = model.subgraphs[0]
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(sub.operators):
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(t, []).append(i)
    groups, i = [], 0
    while i < len(sub.operators):
        op = sub.operators[i]
        nxt = i + 1
        if (_op_name(model, op, schema) == "PAD" and nxt < len(sub.operators)
                and _op_name(model, sub.operators[nxt], schema) in _PADDED
                and len(op.outputs) == 1 and op.outputs[0] not in set(sub.outputs)
                and readers.get(op.outputs[0]) == [nxt]
                and sub.operators[nxt].inputs[0] == op.outputs[0]):
            groups.append([i, nxt])
            i += 2
            continue
        groups.append([i])
        i += 1
    return groups


def group_model(model, group: list[int], schema) -> bytes:
    """The operators of one fusion group as a model: only the last one's outputs leave it."""
    return ops_model(model, group, schema,
                     outputs=list(model.subgraphs[0].operators[group[-1]].outputs))


def prefix_model(model, end: int, schema) -> bytes:
    """The first ``end`` operators of ``model`` (LiteRT runs them in stored order): its
    outputs are every tensor they produce that a later operator or the model's output reads."""
    sub = model.subgraphs[0]
    later = {i for op in sub.operators[end:] for i in op.inputs if i >= 0} | set(sub.outputs)
    produced = [t for op in sub.operators[:end] for t in op.outputs]
    return ops_model(model, list(range(end)), schema,
                     outputs=[t for t in dict.fromkeys(produced) if t in later])


def ops_model(model, indices: list[int], schema, outputs: list[int] | None = None) -> bytes:
    """Operators ``indices`` of ``model`` as a model of their own: constants keep their
    buffers, operands no chosen operator produces become inputs, and ``outputs`` (default:
    every output of the chosen operators) are the outputs."""
    import flatbuffers

    sub = model.subgraphs[0]
    ops = [copy.copy(sub.operators[i]) for i in indices]
    produced = {t for op in ops for t in op.outputs}
    buffers = [schema.BufferT()]
    tensors, remap, inputs = [], {}, []
    for t in [i for op in ops for i in list(op.inputs) + list(op.outputs) if i >= 0]:
        if t in remap:
            continue
        tensor = copy.copy(sub.tensors[t])
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        if data is not None and len(data) and t not in produced:
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if t not in produced:
                inputs.append(len(tensors))
        remap[t] = len(tensors)
        tensors.append(tensor)
    for op in ops:
        op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
        op.outputs = [remap[i] for i in op.outputs]
    new_sub = schema.SubGraphT()
    new_sub.tensors, new_sub.operators, new_sub.name = tensors, ops, "cut"
    new_sub.inputs = inputs
    new_sub.outputs = ([remap[t] for t in outputs] if outputs is not None
                       else [t for op in ops for t in op.outputs])
    new = schema.ModelT()
    new.version, new.description, new.operatorCodes = 3, "convdeploy cut", \
        model.operatorCodes
    new.subgraphs, new.buffers = [new_sub], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(new.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _invoke_ms(interpreter, *, runs: int, warmup: int, batch: int) -> float:
    """Mean ms of ``invoke`` on random inputs of each input's own dtype."""
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        shape = list(d["shape"])
        if batch != 1 and shape and shape[0] == 1:
            interpreter.resize_tensor_input(d["index"], [batch, *shape[1:]])
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(d["dtype"])
        else:
            x = rng.standard_normal(d["shape"]).astype(d["dtype"])
        interpreter.set_tensor(d["index"], x)
    for _ in range(warmup):
        interpreter.invoke()
    t0 = time.perf_counter()
    for _ in range(runs):
        interpreter.invoke()
    return (time.perf_counter() - t0) / runs * 1e3


SEGMENTS = 8  # runs of consecutive ops whose in-context time is measured (prefix models)
MIN_SHARE = 0.1  # of an op's isolated time, kept when the empty invoke's cost is not less
WINDOW_S = 0.1  # seconds per timing window of a prefix model
# windows per isolated op (the median kept): with one, the segment scales of ResNet-20 int8
# at batch 32 ranged x0.48-x1.42 from run to run, and a segment scaled below its convolutions'
# isolated times put them up to 8% above the peak
ISOLATED_ROUNDS = 3


def isolated_timeline(path: Path, *, threads: int, batch: int, runs: int,
                      warmup: int, segments: int = SEGMENTS, rounds: int = 7) -> Timeline:
    """Every op of the ``.tflite`` at ``path`` timed alone on XNNPACK, then scaled to the
    in-context time of its segment (see the module doc)."""
    from ai_edge_litert.interpreter import Interpreter

    schema = _schema()
    data = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    sub = model.subgraphs[0]
    dispatch = _invoke_ms(Interpreter(model_content=_empty_model(schema), num_threads=threads),
                          runs=max(runs, 200), warmup=warmup, batch=1)
    kernels, notes, last = [], [], {}
    groups = fusion_groups(model, schema)
    alone: dict[int, tuple] = {}  # group -> (interpreter, its windows' mean times)
    for g, group in enumerate(groups):
        try:
            interpreter = Interpreter(model_content=group_model(model, group, schema),
                                      num_threads=threads)
            alone[g] = (interpreter, [_invoke_ms(interpreter, runs=runs, warmup=warmup,
                                                 batch=batch)])
        except (RuntimeError, ValueError) as exc:
            name = "+".join(_op_name(model, sub.operators[i], schema) for i in group)
            notes.append(f"op {group[0]} ({name}) could not run alone: "
                         f"{str(exc).splitlines()[0]}")
    for _ in range(ISOLATED_ROUNDS - 1):  # each op in a few windows apart: a burst of
        for interpreter, seen in alone.values():  # noise in one is not its time
            seen.append(_invoke_ms(interpreter, runs=runs, warmup=1, batch=batch))
    for g, (_, seen) in alone.items():
        group = groups[g]
        index, op = group[0], sub.operators[group[-1]]
        name = "+".join(_op_name(model, sub.operators[i], schema) for i in group)
        median = float(np.median(seen))
        # an op shorter than the empty invoke's noise keeps a tenth of its time: no op
        # is free, and a share of zero would hide it from the segment's time
        ms = max(median - dispatch, MIN_SHARE * median)
        constants = [sub.tensors[t].name.decode() for i in group
                     for t in sub.operators[i].inputs
                     if t >= 0 and sub.tensors[t].buffer
                     and model.buffers[sub.tensors[t].buffer].data is not None
                     and len(model.buffers[sub.tensors[t].buffer].data)]
        outputs = tuple(sub.tensors[i].name.decode() for i in op.outputs)
        dtype = _dtype(sub.tensors[op.outputs[0]].type, schema)
        # the writer names constants "<exported node>.<role>" (the node the op computes) and
        # a stride-2 conv's explicit padding "<tensor>.padded_for.<conv node>.paddings"
        originals = tuple(dict.fromkeys(c.rsplit(".", 1)[0].split(".padded_for.")[-1]
                                        for c in constants))
        kernels.append(KernelTime(f"{index}:{name}", name, ms, dtype, initializers=(),
                                  tensors=outputs, originals=originals))
        last[kernels[-1].name] = group[-1]
    notes.append(f"each isolated op less one invoke's own cost ({dispatch * 1e3:.1f} us)")
    fused = sum(len(g) > 1 for g in groups)
    if fused:
        notes.append(f"{fused} PAD(s) timed with the convolution they pad (fused in XNNPACK)")
    # a cut falls after a group's last op, never inside it
    ends = segment_ends([k.ms for k in kernels], [last[k.name] for k in kernels],
                        len(sub.operators), segments)
    cuts = {0: _empty_model(schema)}  # no op: what one invoke costs
    for end in ends:
        cut = data if end == len(sub.operators) else prefix_model(model, end, schema)
        try:  # a prefix LiteRT cannot run merges its segment into the next
            _invoke_ms(Interpreter(model_content=cut, num_threads=threads), runs=1, warmup=0,
                       batch=batch)
        except (RuntimeError, ValueError) as exc:
            notes.append(f"the first {end} ops could not run as a model: "
                         f"{str(exc).splitlines()[0]}")
            continue
        cuts[end] = cut
    ends = [end for end in ends if end in cuts]
    times, errors = _alternating_medians(cuts, threads=threads, batch=batch, rounds=rounds,
                                         runs=max(runs, 200), warmup=warmup)
    kernels, raw, scales = _scaled(kernels, ends, times, errors)
    notes.append(f"{len(ends)} segments' in-context times over their isolated sums: "
                 + ", ".join("-" if x is None else f"x{x:.2f}" for x in raw)
                 + "; scales kept after shrinking toward the model's by the timing noise: "
                 + ", ".join(f"x{x:.2f}" for x in scales))
    # what the whole model runs in, in context: the kernels now sum to it less one invoke's
    # own cost, shown as its own row (per_inference_ms)
    return Timeline(tuple(kernels), times[len(sub.operators)],
                    f"LiteRT XNNPACK, each op isolated, scaled to its segment's in-context "
                    f"time ({len(ends)} segments, prefix models; {threads} "
                    f"thread{'s' if threads > 1 else ''})", runs, tuple(notes),
                    per_inference_ms=times[0], kernels_inflated=False)


def segment_ends(ms: list[float], indices: list[int], n_ops: int, segments: int) -> list[int]:
    """Op counts at which to cut the model into at most ``segments`` runs of consecutive ops
    of about equal isolated time (``ms`` of the ops at ``indices``); the last is ``n_ops``."""
    total = sum(ms) or 1.0
    ends, acc, at_cut = [], 0.0, 0.0
    for index, t in zip(indices, ms):
        acc += t
        if len(ends) < segments - 1 and acc >= total * (len(ends) + 1) / segments \
                and acc > at_cut and index + 1 < n_ops:  # no segment of zero isolated time
            ends.append(index + 1)
            at_cut = acc
    return ends + [n_ops]


def _alternating_medians(models: dict[int, bytes], *, threads: int, batch: int, rounds: int,
                         runs: int, warmup: int) -> tuple[dict[int, float], dict[int, float]]:
    """Median over ``rounds`` of each model's mean invoke time, the models timed in turn, a
    fresh interpreter each time (a drift falls on all alike, no one allocation decides), and
    the median's standard error (1.2533 sd / sqrt(rounds), the normal approximation).
    Each window is at most ``runs`` invokes and about ``WINDOW_S`` long (at least 5 invokes):
    200 runs of ResNet-56 at batch 32 in 9 models and 5 rounds would take 11 minutes."""
    from ai_edge_litert.interpreter import Interpreter

    seen: dict[int, list[float]] = {k: [] for k in models}
    count: dict[int, int] = {}
    for _ in range(rounds):
        for key, content in models.items():
            interpreter = Interpreter(model_content=content, num_threads=threads)
            b = 1 if key == 0 else batch
            if key not in count:  # the window's length, from one timed invoke
                once = _invoke_ms(interpreter, runs=1, warmup=warmup, batch=b)
                count[key] = max(5, min(runs, int(WINDOW_S * 1e3 / max(once, 1e-3))))
            seen[key].append(_invoke_ms(interpreter, runs=count[key], warmup=warmup, batch=b))
    medians = {k: float(np.median(v)) for k, v in seen.items()}
    errors = {k: float(1.2533 * np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
              for k, v in seen.items()}
    return medians, errors


def _scaled(kernels: list[KernelTime], ends: list[int], times: dict[int, float],
            errors: dict[int, float]
            ) -> tuple[list[KernelTime], list[float | None], list[float]]:
    """Each op's isolated time times its segment's scale; returns the ops, each segment's raw
    scale (in-context time, the difference of its prefixes' times, over its isolated sum;
    None where the prefixes did not grow) and the scale kept.

    A raw scale r_i with noise variance v_i (from the prefixes' standard ``errors``) is
    shrunk toward the model's scale g (all segments' time over all isolated time) as
    g + t / (t + v_i) (r_i - g), with t the segments' spread about g that their noise does
    not explain (mean (r_i - g)^2 less mean v_i, at least 0); a segment that did not grow
    takes g. The ops are then rescaled together so that they sum to the model's time."""
    segments, start = [], 0
    for end in ends:
        members = [k for k in kernels if start <= int(k.name.split(":")[0]) < end]
        isolated = sum(k.ms for k in members)
        context = times[end] - times[start]
        grew = isolated > 0 and context > 0
        segments.append((members, isolated, context / isolated if grew else None,
                         (errors[end] ** 2 + errors[start] ** 2) / isolated ** 2
                         if grew else 0.0))
        start = end
    total = times[ends[-1]] - times[0] if ends else 0.0
    isolated_total = sum(s[1] for s in segments)
    if total <= 0 or isolated_total <= 0:  # nothing measured above the noise
        return kernels, [s[2] for s in segments], [1.0] * len(segments)
    model = total / isolated_total
    grown = [(r, v) for _, _, r, v in segments if r is not None]
    spread = max(0.0, float(np.mean([(r - model) ** 2 for r, _ in grown])
                            - np.mean([v for _, v in grown]))) if grown else 0.0
    scales = [model if r is None else
              model + (spread / (spread + v) if spread + v > 0 else 1.0) * (r - model)
              for _, _, r, v in segments]
    fit = total / sum(s * seg[1] for s, seg in zip(scales, segments))
    scales = [s * fit for s in scales]
    out = [replace(k, ms=k.ms * s) for s, seg in zip(scales, segments) for k in seg[0]]
    return out, [s[2] for s in segments], scales


def _empty_model(schema) -> bytes:
    """A one-op model that does no work to speak of: float ADD of two 1-element tensors."""
    import flatbuffers

    tensors = []
    for name in (b"a", b"b", b"y"):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], schema.TensorType.FLOAT32, 0, name
        tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs = tensors, [op], [0, 1], [2]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sub]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _dtype(tensor_type: int, schema) -> str:
    t = schema.TensorType
    return {t.INT8: "int8", t.UINT8: "int8", t.INT16: "int16"}.get(tensor_type, "float")
