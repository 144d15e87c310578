"""The audit spec: which models, schemes (with PTQ methods), targets, thread counts and batch
sizes to sweep, on which data. Frozen dataclasses, parsed once from YAML or the CLI's short
form, and validated before any work (unknown keys, unknown or unavailable targets, missing
files, a scheme a target cannot run)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convdeploy.config import DataConfig, ModelSource, default_methods
from convdeploy.configfile import (SpecError, _typed, check_keys, parse_data, parse_model,
                                   parse_targets, read_yaml)
from convdeploy.quant.config import PTQConfig
from convdeploy.quant.scheme import PRESETS, Calibration, LayerOverride, QuantScheme

FLOAT = "float"


@dataclass(frozen=True)
class SchemeEntry:
    """One row of the sweep's scheme axis: a preset (or ``float``) and its PTQ methods."""

    preset: str  # "float" or a key of quant.scheme.PRESETS
    scheme: QuantScheme | None  # None = the float model
    ptq: PTQConfig | None = None  # None = the methods measured best for the scheme

    @property
    def methods(self) -> tuple:
        if self.scheme is None:
            return ()
        return self.ptq.methods if self.ptq is not None else default_methods(self.scheme)

    @property
    def label(self) -> str:
        """``float``, ``w8a8``, ``w4a8+adaround``, ``w8a8-per-tensor``..."""
        if self.scheme is None:
            return FLOAT
        return "+".join([self.scheme.name, *(m.value for m in self.methods)])


def parse_scheme_entry(tree: Any, where: str) -> SchemeEntry:
    """``w4a8``, ``w4a8+cle+adaround``, ``float`` or ``{scheme: w4a8, ptq: "cle,adaround",
    calibration: mse, adaround_iters: 500, overrides: [layer1.0.conv1=float, fc=8]}``
    (overrides: ``--override``'s LAYER=4|8|float|8a16, as ``convdeploy tune`` writes them)."""
    if isinstance(tree, str):
        name, *methods = [t.strip() for t in tree.split("+")]
        tree = {"scheme": name, **({"ptq": ",".join(methods)} if methods else {})}
    if not isinstance(tree, dict):
        raise SpecError(f"{where} must be a scheme name or a mapping",
                        fix="write e.g. w8a8, w4a8+adaround or {scheme: w4a8, ptq: adaround}")
    check_keys(tree, ("scheme", "ptq", "calibration", "adaround_iters", "overrides"), where)
    name = _typed(tree.get("scheme", ""), str, f"{where}.scheme")
    if name == FLOAT:
        if len(tree) > 1:
            raise SpecError(f"{where}: the float model takes no ptq or calibration",
                            fix="write just: float")
        return SchemeEntry(FLOAT, None)
    if name not in PRESETS:
        raise SpecError(f"{where}: unknown scheme {name!r}",
                        fix=f"choose from float, {', '.join(PRESETS)}")
    scheme = PRESETS[name]
    if "calibration" in tree:
        value = _typed(tree["calibration"], str, f"{where}.calibration")
        if value not in [c.value for c in Calibration]:
            raise SpecError(f"{where}.calibration: unknown method {value!r}",
                            fix=f"choose from {', '.join(c.value for c in Calibration)}")
        scheme = scheme.with_(calibration=value)
    if "overrides" in tree:
        items = tree["overrides"]
        if not isinstance(items, list):
            raise SpecError(f"{where}.overrides must be a list of LAYER=4|8|float|8a16",
                            fix="write e.g. overrides: [conv1=float, layer3.2.conv2=8]")
        try:
            scheme = scheme.with_(overrides=tuple(LayerOverride.parse(str(o)) for o in items))
        except ValueError as exc:
            raise SpecError(f"{where}.overrides: {exc}",
                            fix="write each as LAYER=4, LAYER=8, LAYER=float or LAYER=8a16") from exc
    ptq = None
    settings = {}
    if "adaround_iters" in tree:
        settings["adaround_iters"] = _typed(tree["adaround_iters"], int,
                                            f"{where}.adaround_iters")
    try:
        if "ptq" in tree:
            ptq = PTQConfig.parse(_typed(tree["ptq"], str, f"{where}.ptq"), **settings)
        elif settings:
            ptq = PTQConfig(methods=default_methods(scheme), **settings)
    except ValueError as exc:
        raise SpecError(f"{where}.ptq: {exc}", fix="see `convdeploy export --help`") from exc
    return SchemeEntry(name, scheme, ptq)


@dataclass(frozen=True)
class AuditSpec:
    """A sweep: cells are (model, scheme, target, threads, batch size).

    ``workers`` processes evaluate accuracy in parallel (1 thread each); latency cells run one
    at a time with nothing beside them. ``skip_unsupported`` records a (scheme, target) pair
    the target cannot run as a cell with its reason instead of refusing the spec."""

    models: tuple[ModelSource, ...]
    schemes: tuple[SchemeEntry, ...]
    targets: tuple[str, ...]
    data: DataConfig = field(default_factory=DataConfig)
    threads: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (1,)
    repeats: int = 50
    warmup: int = 10
    min_time_s: float = 1.0
    eval_batch_size: int = 100
    workers: int = 2
    skip_unsupported: bool = False
    bootstrap: int = 2000
    profile: bool = False  # per-layer efficiency of every latency cell that can be profiled

    def __post_init__(self) -> None:
        for name in ("repeats", "eval_batch_size", "workers", "bootstrap"):
            if getattr(self, name) < 1:
                raise SpecError(f"key {name!r} must be at least 1", fix=f"raise {name}")
        if self.warmup < 0:
            raise SpecError("key 'warmup' must be 0 or more", fix="raise warmup")
        if not self.min_time_s >= 0:
            raise SpecError("key 'min_time_s' must be 0 or more",
                            fix="write e.g. min_time_s: 1.0 (seconds of timed runs per cell)")
        for name in ("threads", "batch_sizes"):
            values = getattr(self, name)
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise SpecError(f"key {name!r} must be a list of positive integers, got "
                                f"{list(values)}", fix=f"write e.g. {name}: [1, 2]")


SPEC_KEYS = ("models", "schemes", "targets", "data", "threads", "batch_sizes", "repeats",
             "warmup", "min_time_s", "eval_batch_size", "workers", "skip_unsupported",
             "bootstrap", "profile")


def _int_list(value: Any, key: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    return tuple(_typed(v, int, key) for v in values)


def parse_spec(tree: dict, base: Path | None = None) -> AuditSpec:
    """A YAML tree -> ``AuditSpec`` (relative paths from ``base``, the spec file's folder)."""
    check_keys(tree, SPEC_KEYS, "")
    for key in ("models", "schemes", "targets"):
        if key not in tree:
            raise SpecError(f"key {key!r} is missing", fix=f"add {key}: [...] to the spec")
    models, schemes = tree["models"], tree["schemes"]
    if not isinstance(models, list) or not models:
        raise SpecError("key 'models' must be a non-empty list",
                        fix="write models: [resnet20-cifar10] or a list of {name, weights}")
    if not isinstance(schemes, list) or not schemes:
        raise SpecError("key 'schemes' must be a non-empty list",
                        fix="write schemes: [float, w8a8, w4a8+adaround]")
    kwargs: dict[str, Any] = {
        "models": tuple(parse_model(m, f"models[{i}]", base) for i, m in enumerate(models)),
        "schemes": tuple(parse_scheme_entry(s, f"schemes[{i}]") for i, s in enumerate(schemes)),
        "targets": parse_targets(tree["targets"]),
        "data": parse_data(tree.get("data"), "data", base),
    }
    for key in ("threads", "batch_sizes"):
        if key in tree:
            kwargs[key] = _int_list(tree[key], key)
    for key in ("repeats", "warmup", "eval_batch_size", "workers", "bootstrap"):
        if key in tree:
            kwargs[key] = _typed(tree[key], int, key)
    if "min_time_s" in tree:
        kwargs["min_time_s"] = _typed(tree["min_time_s"], float, "min_time_s")
    for key in ("skip_unsupported", "profile"):
        if key in tree:
            kwargs[key] = _typed(tree[key], bool, key)
    labels = [s.label for s in kwargs["schemes"]]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise SpecError(f"schemes: {', '.join(dupes)} listed twice", fix="list each once")
    return AuditSpec(**kwargs)


def load_spec(path: str | Path) -> AuditSpec:
    return parse_spec(read_yaml(path), Path(path).expanduser().resolve().parent)


def validate(spec: AuditSpec) -> list[tuple[SchemeEntry, str, str]]:
    """Refuse, before any work, what cannot run at all; return the (scheme, target, reason)
    pairs a target cannot run, which ``skip_unsupported`` records instead of refusing."""
    from convdeploy.pipeline import check_data_paths
    from convdeploy.targets import registry

    check_data_paths(spec.data, named="data.{}: path", error=SpecError)
    for i, model in enumerate(spec.models):
        if model.ref.endswith(".pt2") and not Path(model.ref).is_file():
            raise SpecError(f"models[{i}].name: file {model.ref} does not exist",
                            fix="give the path of the saved torch.export program")
    unsupported = []
    for name in spec.targets:
        target = registry.get(name)
        missing = target.unavailable()
        if missing:
            raise SpecError(f"targets: {name} cannot run on this machine: {missing}",
                            fix="install its runtime, or drop it from targets")
        for entry in spec.schemes:
            if entry.scheme is None:
                if not getattr(target, "runs_float", True):
                    unsupported.append((entry, name, f"{name} runs quantized models only"))
                continue
            for reason in target.check_scheme(entry.scheme):
                unsupported.append((entry, name, reason))
    refused = [(e, t, r) for e, t, r in unsupported if e.scheme is not None]
    if refused and not spec.skip_unsupported:
        entry, name, reason = refused[0]
        raise SpecError(f"scheme {entry.label} cannot run on target {name}: {reason}"
                        + (f" (and {len(refused) - 1} more pairs)" if len(refused) > 1 else ""),
                        fix="drop the scheme or the target, or add skip_unsupported: true "
                            "(--skip-unsupported) to record such cells as not run")
    return unsupported
