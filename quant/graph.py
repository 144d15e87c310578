"""Graph capture: every model (nn.Module or saved torch.export program) becomes one aten-level
``torch.fx.GraphModule`` with a dynamic batch dimension. Folding, quantizer insertion, simulation
and export all work on this one IR, so the project owns its quantized graph instead of following
PyTorch's churn between FX, PT2E and torchao quantization APIs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.fx import GraphModule

from convdeploy.errors import ConvdeployError


def check_finite_parameters(model: nn.Module) -> None:
    """NaN/inf in weights would calibrate to garbage scales: refuse with the tensor's name."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ConvdeployError(
                f"weight {name!r} holds {bad} NaN/inf value(s)",
                fix="check the checkpoint (a diverged training run or a corrupt file)")


def batch_dim() -> torch.export.Dim:
    """The dynamic batch dimension every capture and export uses."""
    return torch.export.Dim("batch", min=1, max=4096)


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch_dim()},))
    except Exception as exc:  # torch raises many types here; all mean "cannot capture"
        msg = str(exc).strip().splitlines()[0][:300]
        if "batch" in msg or "Constraints violated" in msg or "specializ" in msg:
            fix = ("make the batch dimension free: use x.flatten(1) instead of x.view(1, -1), "
                   "and no Python branch on x.shape[0]")
        else:
            fix = ("check that the model accepts one input of shape "
                   f"{tuple(example.shape)} (set --size/--mean/--std to change it)")
        raise ConvdeployError(f"torch.export could not capture the model: {msg}", fix=fix) from exc


def capture(model: nn.Module | torch.export.ExportedProgram,
            example: torch.Tensor) -> GraphModule:
    """Capture ``model`` for inputs like ``example`` (any batch size) as an aten GraphModule."""
    exported = isinstance(model, torch.export.ExportedProgram)
    if exported:
        # A program saved with a fixed batch guards on it; conv nets rarely depend on it, so
        # drop the guard and let re-export below prove the batch dimension is free.
        model = model.module(check_guards=False)
        for key, hook in list(model._forward_pre_hooks.items()):
            if getattr(hook, "__name__", "") == "_check_input_constraints_pre_hook":
                del model._forward_pre_hooks[key]
        _drop_guards(model)
    else:
        check_finite_parameters(model)
        model = model.eval()
    with torch.no_grad():
        try:
            reference = model(example)
        except Exception as exc:
            if exported:
                raise ConvdeployError(
                    f"the exported program fails on a batch of {example.shape[0]}: "
                    f"{str(exc).strip().splitlines()[0][:200]}",
                    fix="re-export it with a dynamic batch: torch.export.export(model, (x,), "
                        "dynamic_shapes=({0: torch.export.Dim('batch')},))") from exc
            raise ConvdeployError(
                f"the model failed on an input of shape {tuple(example.shape)}: "
                f"{str(exc).strip().splitlines()[0][:300]}",
                fix="give the input size and channels the model expects "
                    "(--size, and --mean/--std with one value per channel)" + (
                        "; this input is a batch of video clips (N, C, T, H, W): an image "
                        "model takes images, a video model --frames T" if example.dim() == 5
                        else "")) from exc
    if not isinstance(reference, torch.Tensor):
        raise ConvdeployError(
            f"the model returns {type(reference).__name__}, not one tensor of logits",
            fix="wrap it so that forward() returns the classification logits tensor")
    gm = _export(model, example).module()
    _drop_guards(gm)
    canonicalize(gm)
    with torch.no_grad():
        got = gm(example)
    if not torch.allclose(got, reference, rtol=1e-4, atol=1e-4):
        raise ConvdeployError(
            "the captured graph disagrees with the eager model "
            f"(max abs diff {float((got - reference).abs().max()):.3g})",
            fix="the model has data-dependent Python control flow; make forward() traceable")
    return gm


def _drop_guards(gm: GraphModule) -> None:
    """``torch.export`` adds a ``_guards_fn`` call that checks input shapes; our passes rewrite
    the graph and the exporters re-check shapes themselves."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            gm.graph.erase_node(node)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    gm.recompile()


def canonicalize(gm: GraphModule) -> None:
    """Rewrite ops whose ONNX export is needlessly complex into their plain equivalent.

    ``adaptive_avg_pool2d(x, 1)`` (global average pooling) exports, for some input sizes, as a
    ReduceMean followed by an ``as_strided`` Gather chain that OpenVINO computes wrongly on
    quantized inputs; ``mean(x, (-2, -1), keepdim=True)`` is the same value as one ReduceMean.
    An average pool whose one window covers the whole map (a kernel larger than the map with
    ceil_mode, as EfficientNet-style code writes it at 32x32) is that mean too (OpenVINO's
    reader rejects such pools). A division by a number becomes a multiplication by its
    reciprocal. SiLU becomes
    ``x * sigmoid(x)`` and hard-sigmoid ``relu6(x + 3) * (1/6)``, as TFLite runs them (LOGISTIC
    and MUL; ADD with a fused RELU6 and MUL), so each piece has its encoding and its kernel.
    """
    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in (aten.silu.default,
                                                           aten.hardsigmoid.default):
            _decompose_activation(gm, node)
            continue
        if node.op == "call_function" and node.target is aten.div.Tensor \
                and isinstance(node.args[1], (int, float)) and node.args[1] != 0:
            # x / c is x * (1 / c): one multiply by a constant, an integer kernel everywhere
            node.target = aten.mul.Tensor
            node.args = (node.args[0], 1.0 / float(node.args[1]))
            continue
        if node.op == "call_function" and node.target is aten.avg_pool2d.default \
                and _pools_everything(node):
            node.target, node.args, node.kwargs = aten.mean.dim, (node.args[0], [-2, -1], True), {}
            continue
        if node.op == "call_function" and node.target is aten.adaptive_avg_pool2d.default \
                and list(node.args[1]) == [1, 1]:
            with gm.graph.inserting_before(node):
                mean = gm.graph.call_function(aten.mean.dim, (node.args[0], [-2, -1], True))
            mean.meta = dict(node.meta)
            node.replace_all_uses_with(mean)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def _pools_everything(node: torch.fx.Node) -> bool:
    """``avg_pool2d`` with no padding whose output is 1x1 and whose window covers the input."""
    x = node.args[0]
    val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    out = node.meta.get("val")
    if val is None or out is None or val.dim() != 4 or tuple(out.shape[2:]) != (1, 1):
        return False
    args = list(node.args) + [None] * (7 - len(node.args))
    kernel = list(args[1]) * (2 if len(args[1]) == 1 else 1)
    padding = args[3] or [0]
    if any(int(p) for p in padding) or args[6] is not None:
        return False
    return all(int(k) >= int(n) for k, n in zip(kernel, val.shape[2:]))


def _decompose_activation(gm: GraphModule, node: torch.fx.Node) -> None:
    aten = torch.ops.aten
    x = node.args[0]
    g = gm.graph
    with g.inserting_before(node):
        if node.target is aten.silu.default:
            steps = [g.call_function(aten.sigmoid.default, (x,))]
            steps.append(g.call_function(aten.mul.Tensor, (x, steps[0])))
        else:
            steps = [g.call_function(aten.add.Tensor, (x, 3.0))]
            steps.append(g.call_function(aten.hardtanh.default, (steps[0], 0.0, 6.0)))
            steps.append(g.call_function(aten.mul.Tensor, (steps[1], 1.0 / 6.0)))
    for step in steps:  # same shape and module as the activation they replace
        step.meta = dict(node.meta)
    node.replace_all_uses_with(steps[-1])
    g.erase_node(node)


def module_path(node: torch.fx.Node) -> str:
    """The innermost nn.Module path that produced ``node`` ("" for the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    # Export records paths such as "L['self'].layer1.0" in some modes; keep the dotted tail.
    return path.split("L['self'].")[-1] if "L['self']" in path else path


def get_attr_tensor(gm: GraphModule, target: str) -> torch.Tensor:
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)


def set_attr_tensor(gm: GraphModule, target: str, value: torch.Tensor) -> None:
    owner, _, name = target.rpartition(".")
    module = gm.get_submodule(owner) if owner else gm
    if hasattr(module, name):
        delattr(module, name)
    module.register_parameter(name, nn.Parameter(value, requires_grad=False))
