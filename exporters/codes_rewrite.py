"""Exact graph rewrites of data movement in an ONNX file, applied by the ONNX targets before a
runtime reads it (the exported file is never changed).

Found with ``convdeploy profile`` (docs/efficiency.md): ResNet's option-A shortcut
(``x[:, :, ::2, ::2]`` then a zero channel pad) exports as ``Slice(H) -> Slice(W) -> Pad``,
and in the QDQ file each of them sits between a DequantizeLinear and a QuantizeLinear of one
encoding. ONNX Runtime fuses neither Slice nor Pad with their quantizers: on ResNet-20 W8A8 it
ran 4 Slice, 2 Pad, 4 DequantizeLinear and 4 QuantizeLinear kernels in float for the two
shortcuts (~9% of the kernel time, batch 1). Both rewrites here are exact:

- ``on_codes``: ``DequantizeLinear(s, zp) -> Slice|Pad -> QuantizeLinear(s, zp)`` becomes the
  op on the integer codes. A Slice selects values, so the codes it selects are the codes the
  chain re-quantizes; a constant Pad with 0.0 pads with Q(0.0) = zp, so the Pad of the codes
  pads with the zero point. Bit-exact by construction, and tested against the file as
  written on ONNX Runtime and OpenVINO.
- ``merge_slices``: two static Slices over disjoint axes, the first read only by the second,
  become one Slice with both axes: exact (float or codes).
- ``slices_as_pools``: a Slice that only decimates the spatial axes of a 4-D tensor (start 0,
  to the end, step s) is a MaxPool with a 1x1 window and stride s: the max of one value is
  that value, float or code. ONNX Runtime's Slice is a generic strided copy (10-20 us per
  shortcut on ResNet-20, batch 1); its MaxPool is a vectorised kernel that also runs in the
  NHWC layout of its int8 convolutions.
"""
from __future__ import annotations

import numpy as np

MOVEMENT = ("Slice", "Pad")


def _index(graph):
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return producer, readers, {i.name: i for i in graph.initializer}


def _scalar_zero_point(dq, inits) -> bool:
    return len(dq.input) > 2 and dq.input[2] in inits and len(inits[dq.input[2]].dims) == 0 \
        and dq.input[1] in inits and len(inits[dq.input[1]].dims) == 0


def _pads_with_zero(node, inits) -> bool:
    from onnx import numpy_helper

    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    if mode != b"constant":
        return False
    value = node.input[2] if len(node.input) > 2 else ""
    return not value or (value in inits and
                         not np.any(numpy_helper.to_array(inits[value]) != 0))


_BYTE_CODES = (2, 3)  # onnx TensorProto.UINT8, INT8: the code types every runtime's Slice,
# Pad and MaxPool take (ORT refuses MaxPool on uint16 and uint4 codes)


def on_codes(model, *, wide_pads: bool = False) -> int:
    """Rewrite every ``DQ -> Slice|Pad -> Q`` on one scalar 8-bit encoding as the op on the
    codes (in place; see the module doc); ``wide_pads``: Pads of 16- and 4-bit codes too
    (OpenVINO reads them; its legalization needs them). Returns how many."""
    from onnx import helper

    graph = model.graph
    producer, readers, inits = _index(graph)
    outputs = {o.name for o in graph.output}
    replace, drop = {}, set()
    for node in graph.node:
        if node.op_type not in MOVEMENT or node.output[0] in outputs:
            continue
        dq = producer.get(node.input[0])
        users = readers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or not _scalar_zero_point(dq, inits) \
                or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q = users[0]
        if list(q.input[1:3]) != list(dq.input[1:3]):
            continue
        if node.op_type == "Pad" and not _pads_with_zero(node, inits):
            continue
        if inits[dq.input[2]].data_type not in _BYTE_CODES and not (
                wide_pads and node.op_type == "Pad"):
            continue
        inputs = [dq.input[0], *node.input[1:]]
        if node.op_type == "Pad":
            inputs = [dq.input[0], node.input[1], dq.input[2], *node.input[3:]]
        replace[id(node)] = helper.make_node(node.op_type, inputs, [q.output[0]],
                                             name=node.name, domain=node.domain)
        replace[id(node)].attribute.extend(node.attribute)
        drop.add(id(q))
    if replace:
        _replace(graph, replace, drop)
        _drop_dead_dequantizers(graph)
    return len(replace)


def _static(node, inits) -> dict[str, np.ndarray] | None:
    """A Slice's starts/ends/axes/steps when all are initializers (axes and steps given)."""
    from onnx import numpy_helper

    if len(node.input) < 5 or not all(i in inits for i in node.input[1:5]):
        return None
    return {k: numpy_helper.to_array(inits[i]).astype(np.int64)
            for k, i in zip(("starts", "ends", "axes", "steps"), node.input[1:5])}


def merge_slices(model) -> int:
    """Fold ``Slice -> Slice`` over disjoint axes into one Slice (in place). Returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    merged = 0
    while True:
        producer, readers, inits = _index(graph)
        outputs = {o.name for o in graph.output}
        pair = None
        for second in graph.node:
            first = producer.get(second.input[0]) if second.op_type == "Slice" else None
            if first is None or first.op_type != "Slice" or first.output[0] in outputs \
                    or len(readers.get(first.output[0], [])) != 1:
                continue
            a, b = _static(first, inits), _static(second, inits)
            if a is None or b is None or set(a["axes"].tolist()) & set(b["axes"].tolist()) \
                    or np.any(a["axes"] < 0) or np.any(b["axes"] < 0):
                continue
            pair = first, second, a, b
            break
        if pair is None:
            return merged
        first, second, a, b = pair
        names = []
        for key in ("starts", "ends", "axes", "steps"):
            name = f"{first.name}+{second.name}.{key}"
            graph.initializer.append(numpy_helper.from_array(
                np.concatenate([a[key], b[key]]), name))
            names.append(name)
        node = helper.make_node("Slice", [first.input[0], *names], [second.output[0]],
                                name=first.name)
        _replace(graph, {id(second): node}, {id(first)})
        merged += 1


def slices_as_pools(model) -> int:
    """Rewrite spatial decimation Slices of 4-D tensors as 1x1 MaxPools (in place)."""
    import onnx
    from onnx import helper

    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    values = list(inferred.value_info) + list(inferred.input)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    _, _, inits = _index(graph)
    replace = {}
    for node in graph.node:
        params = _static(node, inits) if node.op_type == "Slice" else None
        shape = shapes.get(node.input[0], [])
        if params is None or len(shape) != 4 or not shape[2] or not shape[3] or \
                types.get(node.input[0]) not in (1, *_BYTE_CODES):  # float or 8-bit codes
            continue
        axes = [int(a) + 4 if a < 0 else int(a) for a in params["axes"]]
        if not set(axes) <= {2, 3} or np.any(params["starts"] != 0) or \
                np.any(params["steps"] < 1) or \
                any(e < shape[a] for e, a in zip(params["ends"].tolist(), axes)):
            continue
        strides = [1, 1]
        for a, step in zip(axes, params["steps"].tolist()):
            strides[a - 2] = step
        replace[id(node)] = helper.make_node("MaxPool", [node.input[0]], [node.output[0]],
                                             name=node.name, kernel_shape=[1, 1],
                                             strides=strides)
    if replace:
        _replace(graph, replace, set())
    return len(replace)


def _replace(graph, replace: dict, drop: set) -> None:
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(nodes)


def _drop_dead_dequantizers(graph) -> None:
    """DequantizeLinear nodes whose output nothing reads any more (their reader now runs on
    the codes)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node if n.op_type != "DequantizeLinear" or n.output[0] in used]
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def rewrite(model, *, pools: bool = True, wide_pads: bool = False) -> dict[str, int]:
    """The rewrites in order: codes first (it leaves Slice -> Slice chains on codes to merge),
    then the merge, then (``pools``) decimations as pools. Returns the counts made."""
    counts = {"on_codes": on_codes(model, wide_pads=wide_pads),
              "merged_slices": merge_slices(model),
              "slices_as_pools": slices_as_pools(model) if pools else 0}
    return {k: v for k, v in counts.items() if v}
