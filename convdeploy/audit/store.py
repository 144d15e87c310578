"""Where an audit keeps its finished work: ``DIR/cells/<key>.json`` (+ ``.npz`` of logits),
each written atomically once its unit finishes, and the fingerprints that key them.

A rerun reads the folder and skips every unit whose key is there, so a killed sweep loses at
most the units that were running. Keys change when the model, its weights, the data or the
environment (library versions, CPU) change: nothing stale is reused.
"""
from __future__ import annotations

import hashlib
import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from convdeploy.config import DataConfig, ModelSource
from convdeploy.files import write_bytes_atomic, write_text_atomic

ENV_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "openvino", "ai-edge-litert",
                "onnxruntime-qnn", "convdeploy")


class CellStore:
    """Finished units by key: JSON for figures, NPZ for arrays (logits, labels)."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "cells"
        self.dir.mkdir(parents=True, exist_ok=True)

    def has(self, key: str) -> bool:
        return (self.dir / f"{key}.json").exists()

    def keys(self) -> set[str]:
        return {p.stem for p in self.dir.glob("*.json")}

    def put(self, key: str, record: dict) -> None:
        """Arrays first, then the JSON: a JSON file present means the unit is complete."""
        record = dict(record)
        arrays = record.pop("arrays", None)
        if arrays:
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            write_bytes_atomic(self.dir / f"{key}.npz", buf.getvalue())
            record["arrays"] = sorted(arrays)
        write_text_atomic(self.dir / f"{key}.json",
                          json.dumps(record, indent=1, default=_json_default))

    def get(self, key: str) -> dict:
        return json.loads((self.dir / f"{key}.json").read_text())

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        path = self.dir / f"{key}.npz"
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _hash_path(path: Path, h) -> None:
    """Content of a file, or of every file below a folder (relative names and bytes)."""
    if path.is_file():
        h.update(path.read_bytes())
        return
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())


def data_fingerprint(data: DataConfig) -> dict:
    """A digest of each data path's contents (None: the model's own default data)."""
    out = {}
    for role in ("calib", "eval", "train"):
        path = getattr(data, role)
        if path:
            h = hashlib.sha256()
            _hash_path(Path(path).expanduser(), h)
            out[role] = h.hexdigest()[:20]
    return out


def model_fingerprint(model: ModelSource) -> dict:
    """The weights' (or .pt2 program's) contents; zoo models without --weights: their
    packaged file, or the zoo name (a model built from code with its own initialisation)."""
    from convdeploy.models.zoo import ZOO

    out: dict[str, Any] = {"ref": model.ref}
    files = [model.weights] if model.weights else []
    if model.ref.endswith(".pt2"):
        files.append(model.ref)
    elif model.ref in ZOO and not model.weights and ZOO[model.ref].weights:
        files.append(str(ZOO[model.ref].weights))
    for f in files:
        h = hashlib.sha256()
        _hash_path(Path(f).expanduser(), h)
        out[f"sha256:{Path(f).name}"] = h.hexdigest()[:20]
    return out


CODE_PACKAGES = ("convdeploy", "convdeploy.quant", "convdeploy.exporters", "convdeploy.targets",
                 "convdeploy.models")


def code_fingerprint() -> str:
    """A digest of convdeploy's own source: a fixed kernel or target must not reuse the cells
    its earlier code computed (a version number alone would not change between commits).
    Files are named by module, so an editable checkout and an installed wheel of the same
    commit agree (installed, the subpackages also sit inside convdeploy's folder)."""
    import importlib.util

    modules = {}
    for package in CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for f in Path(folder).rglob("*.py"):
                parts = f.relative_to(folder).with_suffix("").parts
                modules[".".join((package, *parts))] = f
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode())
        h.update(modules[name].read_bytes())
    return h.hexdigest()[:20]


def environment_fingerprint() -> dict:
    """Library versions, the CPU and convdeploy's code: results measured elsewhere, or by other
    code, are not reused here."""
    import importlib.metadata as md

    from convdeploy.report import environment

    versions = {}
    for pkg in ENV_PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    env = environment(1)
    return {"cpu": env["cpu"], "python": platform.python_version(), "versions": versions,
            "code": code_fingerprint()}
