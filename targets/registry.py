"""The explicit target registry. Third parties add targets through the ``convdeploy.targets``
entry-point group (``name = package.module:TargetClass``), as hls4ml's ``register_backend``."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from convdeploy.errors import ConvdeployError

from .base import Target

ENTRY_POINT_GROUP = "convdeploy.targets"
BUILTIN: dict[str, str] = {
    "reference": "convdeploy.targets.reference:ReferenceTarget",
    "cpu-ort": "convdeploy.targets.cpu_ort:OrtCpuTarget",
    "cpu-openvino": "convdeploy.targets.cpu_openvino:OpenVinoCpuTarget",
    "int-reference": "convdeploy.targets.int_reference:IntReferenceTarget",
    "mobile-litert": "convdeploy.targets.mobile_litert:LiteRtTarget",
    "mobile-litert-ref": "convdeploy.targets.mobile_litert:LiteRtReferenceTarget",
    "dsp-qnn-htp": "convdeploy.targets.dsp_qnn_htp:QnnHtpTarget",
    "fpga-hls": "convdeploy.targets.fpga_hls:FpgaHlsTarget",
    "gpu-triton": "convdeploy.targets.gpu_triton:TritonTarget",
    "gpu-triton-im2win": "convdeploy.targets.gpu_triton:TritonIm2winTarget",
    "gpu-torch": "convdeploy.targets.gpu_torch:TorchCudaTarget",
    "gpu-torch-fp16": "convdeploy.targets.gpu_torch:TorchCudaFp16Target",
    "gpu-torch-bf16": "convdeploy.targets.gpu_torch:TorchCudaBf16Target",
}
_registered: dict[str, str] = {}


def register(name: str, import_path: str) -> None:
    """Register a target class by ``module:Class`` path (imported only when used)."""
    _registered[name] = import_path


def _all_paths() -> dict[str, str]:
    paths = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        paths.setdefault(ep.name, ep.value)
    paths.update(_registered)
    return paths


def names() -> list[str]:
    return list(_all_paths())


def get(name: str) -> Target:
    paths = _all_paths()
    if name not in paths:
        raise ConvdeployError(f"unknown target {name!r}",
                              fix=f"choose from {', '.join(paths)} (see `convdeploy targets`)")
    module_name, _, cls_name = paths[name].partition(":")
    return getattr(importlib.import_module(module_name), cls_name)()
