"""YAML configuration files, parsed once at the edge into the frozen config dataclasses.

One tree serves ``convdeploy export --config FILE.yaml`` (``model``, ``data``, ``scheme``,
``targets``, ``measure``) and ``convdeploy audit SPEC.yaml`` (``models``, ``schemes`` as lists;
see ``convdeploy.audit.spec``). Every key is checked: an unknown key, a wrong type or a value
out of range is refused with the key's dotted path (``data.calib_size``) and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .config import DataConfig, MeasureConfig, ModelSource
from .errors import ConvdeployError


class SpecError(ConvdeployError):
    """A configuration file is invalid; the message names the key (dotted path) and value."""


def read_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file (safe loader: no Python objects)."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"config file {path} does not exist", fix="give the path of a .yaml file")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}",
                        fix="check the file's indentation and quoting") from exc
    if not isinstance(tree, dict):
        raise SpecError(f"{path} does not hold a mapping of keys",
                        fix="write keys such as model:, data:, scheme: at the top level")
    return tree


def check_keys(tree: dict, known: tuple[str, ...], where: str) -> None:
    """Refuse any key of ``tree`` not in ``known``, naming it and the known ones."""
    for key in tree:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            raise SpecError(f"unknown key {path!r}", fix=f"use one of: {', '.join(known)}")


def _typed(value: Any, kind: type, key: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(","))
        if isinstance(value, list):
            return tuple(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"key {key!r} must be {kind.__name__}, got {value!r}",
                        fix=f"write {key} as a {kind.__name__}")
    return value


@dataclass(frozen=True)
class _Field:
    kind: type
    optional: bool = True


_DATA_FIELDS = {"calib": _Field(str), "eval": _Field(str), "train": _Field(str),
                "calib_size": _Field(int), "eval_limit": _Field(int), "size": _Field(tuple),
                "mean": _Field(tuple), "std": _Field(tuple), "resize": _Field(int),
                "seed": _Field(int), "skip_bad_files": _Field(bool), "frames": _Field(int),
                "frame_stride": _Field(int)}


def parse_data(tree: Any, where: str = "data", base: Path | None = None) -> DataConfig:
    """``data:`` -> ``DataConfig``; relative paths are taken from the config file's folder."""
    if tree is None:
        return DataConfig()
    if not isinstance(tree, dict):
        raise SpecError(f"key {where!r} must be a mapping", fix="write calib:, eval: ... under it")
    check_keys(tree, tuple(_DATA_FIELDS), where)
    values = {}
    for key, value in tree.items():
        if value is None:
            continue
        value = _typed(value, _DATA_FIELDS[key].kind, f"{where}.{key}")
        if key in ("calib", "eval", "train"):
            value = _resolve(value, base)
        if key == "size":
            value = (int(value[0]), int(value[-1]))
        values[key] = value
    try:
        return DataConfig(**values)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}", fix=f"correct the value under {where}") from exc


def _resolve(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or base is None else (base / p))


def parse_model(tree: Any, where: str, base: Path | None = None) -> ModelSource:
    """``resnet20-cifar10`` or ``{name: ..., weights: ...}`` -> ``ModelSource``."""
    if isinstance(tree, str):
        return ModelSource(tree)
    if not isinstance(tree, dict):
        raise SpecError(f"key {where!r} must be a model name or a mapping",
                        fix="write name: (zoo name, package.module:factory or .pt2) and weights:")
    check_keys(tree, ("name", "weights", "conv3d_as_2d"), where)
    if "name" not in tree:
        raise SpecError(f"key '{where}.name' is missing", fix="name the model (zoo name, "
                        "package.module:factory or a .pt2 file)")
    name = _typed(tree["name"], str, f"{where}.name")
    if name.endswith(".pt2"):
        name = _resolve(name, base)
    weights = tree.get("weights")
    if weights is not None:
        weights = _resolve(_typed(weights, str, f"{where}.weights"), base)
        if not Path(weights).is_file():
            raise SpecError(f"{where}.weights: file {weights} does not exist",
                            fix="give the path of the checkpoint (relative to the spec file)")
    return ModelSource(name, weights,
                       _typed(tree.get("conv3d_as_2d", False), bool, f"{where}.conv3d_as_2d"))


_MEASURE_KEYS = tuple(f.name for f in fields(MeasureConfig))


def parse_measure(tree: Any, where: str = "measure") -> MeasureConfig:
    if tree is None:
        return MeasureConfig()
    if not isinstance(tree, dict):
        raise SpecError(f"key {where!r} must be a mapping", fix="write threads:, repeats: ...")
    check_keys(tree, _MEASURE_KEYS, where)
    try:
        return MeasureConfig(**{k: _typed(v, float if k == "min_time_s" else int,
                                          f"{where}.{k}") for k, v in tree.items()})
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}", fix=f"correct the value under {where}") from exc


def parse_targets(tree: Any, where: str = "targets") -> tuple[str, ...]:
    """A list (or comma-separated string) of registered target names."""
    from convdeploy.targets import registry

    names = tree.split(",") if isinstance(tree, str) else tree
    if not isinstance(names, list) or not names:
        raise SpecError(f"key {where!r} must be a list of target names",
                        fix="write e.g. targets: [cpu-ort, mobile-litert]")
    known = registry.names()
    out = []
    for i, name in enumerate(names):
        name = str(name).strip()
        if name not in known:
            raise SpecError(f"{where}[{i}]: unknown target {name!r}",
                            fix=f"choose from {', '.join(known)} (see `convdeploy targets`)")
        out.append(name)
    return tuple(dict.fromkeys(out))


EXPORT_KEYS = ("model", "data", "scheme", "targets", "measure")


@dataclass(frozen=True)
class ExportFile:
    """What ``convdeploy export --config FILE`` takes from the file (None = not given)."""

    model: ModelSource | None
    data: DataConfig | None
    scheme: Any  # audit.spec.SchemeEntry | None
    targets: tuple[str, ...] | None
    measure: MeasureConfig | None


def parse_export_file(path: str | Path) -> ExportFile:
    from convdeploy.audit.spec import parse_scheme_entry

    tree = read_yaml(path)
    base = Path(path).expanduser().resolve().parent
    check_keys(tree, EXPORT_KEYS, "")
    return ExportFile(
        model=parse_model(tree["model"], "model", base) if "model" in tree else None,
        data=parse_data(tree["data"], "data", base) if "data" in tree else None,
        scheme=parse_scheme_entry(tree["scheme"], "scheme") if "scheme" in tree else None,
        targets=parse_targets(tree["targets"]) if "targets" in tree else None,
        measure=parse_measure(tree["measure"]) if "measure" in tree else None)
