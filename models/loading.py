"""Turning the user's model reference into an ``nn.Module`` (or exported program).

A model is a zoo name, an import path ``package.module:factory`` (plus ``--weights``), or a saved
``torch.export`` program (``.pt2``). Checkpoints load with ``weights_only=True`` only: one that
needs pickled code is refused, never executed.
"""
from __future__ import annotations

import importlib
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convdeploy.errors import ConvdeployError

from .spec import ModelSpec, Preprocess
from .zoo import ZOO

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class LoadedModel:
    name: str
    model: nn.Module | torch.export.ExportedProgram
    spec: ModelSpec | None  # zoo models
    source: str
    weights: str | None
    preprocess_hint: Preprocess | None  # zoo preprocessing or a .pt2's input size


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: a bare state dict, or a dict holding one under ``state_dict``
    (or ``model``); a ``module.`` prefix (DataParallel) is stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConvdeployError(f"weights file {path} does not exist",
                              fix="pass --weights with the path of a saved state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConvdeployError(
            f"checkpoint {path} needs Python code to unpickle, which convdeploy never runs "
            "(torch.load weights_only=True)",
            fix="re-save it as a plain state dict: torch.save(model.state_dict(), path)") from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise ConvdeployError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}",
                              fix="check that the file is a torch.save checkpoint") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConvdeployError(f"checkpoint {path} holds no state dict of tensors",
                              fix="save model.state_dict() (or a dict with it under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def apply_weights(model: nn.Module, path: str | Path) -> None:
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys and shape mismatches, all listed
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise ConvdeployError(
            f"weights {path} do not fit the model: {'; '.join(lines)[:400]}",
            fix="pass the checkpoint that was trained for this architecture") from exc


def _from_import_path(ref: str) -> nn.Module:
    module_name, factory_name = ref.split(":")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the user's own modules in the working dir
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConvdeployError(f"cannot import {module_name!r}: {exc}",
                              fix="run from the directory that holds it, or set PYTHONPATH")
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        raise ConvdeployError(f"{module_name} has no callable {factory_name!r}",
                              fix="name a function or class that returns an nn.Module")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ConvdeployError(f"{ref} returned {type(model).__name__}, not an nn.Module",
                              fix="the factory must return a torch.nn.Module")
    return model


def _from_pt2(path: Path) -> tuple[torch.export.ExportedProgram, Preprocess | None]:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        raise ConvdeployError(f"cannot load exported program {path}: {exc}",
                              fix="save it with torch.export.save(torch.export.export(...), path)")
    inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    hint = None
    if len(inputs) == 1:
        node = next(n for n in program.graph.nodes if n.name == inputs[0].arg.name)
        shape = tuple(int(d) for d in node.meta["val"].shape[1:])
        if len(shape) == 3 and shape[0] in (1, 3):
            hint = Preprocess(size=shape[1:], mean=(0.0,) * shape[0], std=(1.0,) * shape[0])
    return program, hint


def load_model(ref: str, weights: str | Path | None = None) -> LoadedModel:
    """Resolve a zoo name, ``package.module:factory`` or ``.pt2`` path to a model."""
    if ref in ZOO:
        spec = ZOO[ref]
        weights = weights or spec.weights
        if weights is None or (weights == spec.weights and not Path(weights).is_file()):
            raise ConvdeployError(f"{ref} needs --weights FILE",
                                  fix=f"pass {spec.weights_hint}; no model hub is contacted")
        model = spec.build()
        apply_weights(model, weights)
        return LoadedModel(ref, model.eval(), spec, "zoo", str(weights), spec.preprocess)
    if ref.endswith(".pt2"):
        path = Path(ref).expanduser()
        if not path.is_file():
            raise ConvdeployError(f"exported program {path} does not exist",
                                  fix="give the path of a file written by torch.export.save")
        if weights:
            raise ConvdeployError("--weights does not apply to a .pt2 program",
                                  fix="a .pt2 file already holds its weights; drop --weights")
        program, hint = _from_pt2(path)
        return LoadedModel(path.stem, program, None, str(path), None, hint)
    if IMPORT_PATH.match(ref):
        model = _from_import_path(ref)
        if weights:
            apply_weights(model, weights)
        return LoadedModel(ref.split(":")[1], model.eval(), None, ref,
                           str(weights) if weights else None, None)
    raise ConvdeployError(
        f"unknown model {ref!r}",
        fix=f"use a zoo name ({', '.join(ZOO)}), package.module:factory, or a .pt2 file")
