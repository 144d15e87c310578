"""Per-op times on LiteRT, taken in isolation: each operator of a ``.tflite`` cut out as a one-op
model and timed alone on the same kernels (XNNPACK) and thread count.

ai-edge-litert 2.3 exposes no per-op profiler to Python and ``benchmark_model`` ships in no
wheel, so this is the only per-op view here. Isolation changes what is measured: an op alone
starts with its input in cache only if it fits, and pays one interpreter dispatch; on
ResNet-20 the isolated ops summed to 358 us against 323 us for the whole model. The figures
are labelled "isolated" wherever they are shown, and the whole-model time is measured in the
same way (``invoke`` only) so the two can be compared. What one ``invoke`` costs with no work
(a one-element ADD, measured alike) is subtracted from every isolated op: the whole model pays
it once, not once per op.
"""
from __future__ import annotations

import copy
import time
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


def one_op_model(model, index: int, schema) -> bytes:
    """The ``index``-th operator of ``model`` (a ``ModelT``) as a model of its own: its
    constant operands keep their buffers, its other operands become the model's inputs."""
    import flatbuffers

    sub = model.subgraphs[0]
    op = copy.copy(sub.operators[index])
    buffers = [schema.BufferT()]
    tensors, remap, inputs = [], {}, []
    for t in [i for i in op.inputs if i >= 0] + list(op.outputs):
        if t in remap:
            continue
        tensor = copy.copy(sub.tensors[t])
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        if data is not None and len(data) and t not in op.outputs:
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if t not in op.outputs:
                inputs.append(len(tensors))
        remap[t] = len(tensors)
        tensors.append(tensor)
    op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
    op.outputs = [remap[i] for i in op.outputs]
    new_sub = schema.SubGraphT()
    new_sub.tensors, new_sub.operators, new_sub.name = tensors, [op], "one_op"
    new_sub.inputs, new_sub.outputs = inputs, list(op.outputs)
    new = schema.ModelT()
    new.version, new.description, new.operatorCodes = 3, "convdeploy one-op", \
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


def isolated_timeline(path: Path, *, threads: int, batch: int, runs: int,
                      warmup: int) -> Timeline:
    """Every op of the ``.tflite`` at ``path`` timed alone on XNNPACK (see the module doc)."""
    from ai_edge_litert.interpreter import Interpreter

    schema = _schema()
    data = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    sub = model.subgraphs[0]
    whole = _invoke_ms(Interpreter(model_content=data, num_threads=threads),
                       runs=runs, warmup=warmup, batch=batch)
    dispatch = _invoke_ms(Interpreter(model_content=_empty_model(schema), num_threads=threads),
                          runs=max(runs, 200), warmup=warmup, batch=1)
    kernels, notes = [], []
    for index, op in enumerate(sub.operators):
        name = _op_name(model, op, schema)
        try:
            interpreter = Interpreter(model_content=one_op_model(model, index, schema),
                                      num_threads=threads)
            ms = max(0.0, _invoke_ms(interpreter, runs=runs, warmup=warmup, batch=batch)
                     - dispatch)
        except (RuntimeError, ValueError) as exc:
            notes.append(f"op {index} ({name}) could not run alone: {str(exc).splitlines()[0]}")
            continue
        operands = [sub.tensors[i].name.decode() for i in op.inputs if i >= 0]
        constants = [n for i, n in zip([i for i in op.inputs if i >= 0], operands)
                     if sub.tensors[i].buffer and model.buffers[sub.tensors[i].buffer].data
                     is not None and len(model.buffers[sub.tensors[i].buffer].data)]
        outputs = tuple(sub.tensors[i].name.decode() for i in op.outputs)
        dtype = _dtype(sub.tensors[op.outputs[0]].type, schema)
        # the writer names constants "<exported node>.<role>" (the node the op computes) and
        # a stride-2 conv's explicit padding "<tensor>.padded_for.<conv node>.paddings"
        originals = tuple(dict.fromkeys(c.rsplit(".", 1)[0].split(".padded_for.")[-1]
                                        for c in constants))
        kernels.append(KernelTime(f"{index}:{name}", name, ms, dtype, initializers=(),
                                  tensors=outputs, originals=originals))
    notes.append(f"each isolated op less one invoke's own cost ({dispatch * 1e3:.1f} us)")
    # isolated times carry no profiler cost (each op timed alone, one invoke's cost taken off):
    # kept as measured, scaled down only where they sum past the latency
    return Timeline(tuple(kernels), whole, f"LiteRT XNNPACK, each op isolated ({threads} "
                    f"thread{'s' if threads > 1 else ''})", runs, tuple(notes),
                    kernels_inflated=False)


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
