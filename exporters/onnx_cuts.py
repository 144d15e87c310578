"""Prefixes of an ONNX graph: the model up to a tensor every later node depends on alone.

A profile times such prefixes (each ending in a reduction to one number, ``prefix``) to learn
where a runtime spends the time its own counters do not show (``cpu-openvino``): the growth
of that uncounted time from one prefix to the next belongs to the nodes between them. A cut is only taken where it changes nothing upstream: at a tensor
that is the only one alive at that point of the node order (so the prefix is the model's own
first nodes, nothing else), that is not a DequantizeLinear's output (in a QDQ graph the cut
goes after the QuantizeLinear, which the runtime folds into the kernel before it: the prefix
ends on the integer codes the model passes on), and that feeds a convolution or matrix
product or several nodes (so no activation or quantizer that the runtime would fuse into the
kernel before the cut is cut away from it).
"""
from __future__ import annotations

_WEIGHTED = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul",
             "MatMulInteger", "QLinearMatMul"}


def cut_points(model, count: int) -> list[tuple[int, str]]:
    """Up to ``count`` cuts ``(node index, tensor)`` spread evenly over the node order: the
    prefix of a cut is nodes ``[0, index]`` with ``tensor`` as its output."""
    nodes = list(model.graph.node)
    inits = {t.name for t in model.graph.initializer}
    for node in nodes:  # constants: what depends on initializers alone (weight dequantizers)
        if all(not n or n in inits for n in node.input):
            inits |= set(node.output)
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            if name and name not in inits:
                consumers.setdefault(name, []).append(i)
    producer = {o: node for node in nodes for o in node.output}
    end = len(nodes)
    last_use = {t: max(users) for t, users in consumers.items()}
    for out in model.graph.output:
        last_use[out.name] = end
    producer = {o: node for o, node in producer.items() if o not in inits}
    alive = {i.name for i in model.graph.input if i.name not in inits and i.name in last_use}
    found = []
    for i, node in enumerate(nodes[:-1]):
        alive |= {o for o in node.output if last_use.get(o, -1) > i}
        alive = {t for t in alive if last_use[t] > i}
        if len(alive) != 1:
            continue
        (tensor,) = alive
        if tensor in producer and producer[tensor].op_type != "DequantizeLinear" \
                and _feeds_a_kernel(tensor, nodes, consumers):
            found.append((i, tensor))
    if len(found) <= count:
        return found
    step = len(found) / count
    return [found[min(len(found) - 1, int((k + 1) * step) - 1)] for k in range(count)]


def _feeds_a_kernel(tensor: str, nodes, consumers: dict[str, list[int]]) -> bool:
    users = list(consumers.get(tensor, ()))
    seen = []
    while users:  # through the dequantizers of a QDQ graph to the ops that read the values
        i = users.pop()
        if nodes[i].op_type == "DequantizeLinear":
            users += consumers.get(nodes[i].output[0], [])
        else:
            seen.append(i)
    return len(seen) > 1 or any(nodes[i].op_type in _WEIGHTED for i in seen)


def prefix(model, index: int, tensor: str, name: str):
    """The model's nodes ``[0, index]`` with the maximum of ``tensor`` as its only output (a
    scalar of the tensor's element type, from shape inference; float where it gives none).
    Every prefix, the whole model's too (``index`` its last node), ends in the same tiny
    reduction, so what the runtime spends on handing out the result is alike for all: with
    the cut tensor itself as the output, a runtime's cost of returning a 80 KB tensor fell on
    the last segment as a negative growth of ~20-50 us (OpenVINO, MobileNetV2, batch 1)."""
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.output)}
    nodes = list(model.graph.node)[:index + 1]
    nodes.append(helper.make_node("ReduceMax", [tensor], [f"{name}_max"], f"{name}_max",
                                  keepdims=0))
    used = {n for node in nodes for n in node.input}
    graph = helper.make_graph(
        nodes, name, list(model.graph.input),
        [helper.make_tensor_value_info(f"{name}_max", types.get(tensor) or TensorProto.FLOAT,
                                       [])],
        [t for t in model.graph.initializer if t.name in used])
    cut = helper.make_model(graph, opset_imports=list(model.opset_import))
    cut.ir_version = model.ir_version
    return cut
