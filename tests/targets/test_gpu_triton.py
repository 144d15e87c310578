"""gpu-triton equals int-reference bit for bit, on every tensor of seeded tiny models.

Without a GPU the Triton kernels run under ``TRITON_INTERPRET=1`` (numpy) on the CPU: exactness
is proved here, in CI; only speed needs the lent GPU (``bench/gpu.py``). The kernels are also
compiled for Hopper (sm_90) to PTX, which needs no GPU, so a kernel that only the GPU compiler
rejects fails here too.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.conftest import scratch_dir

pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

ALGORITHMS = ("gpu-triton", "gpu-triton-im2win")


def _cuda() -> bool:
    return torch.cuda.is_available()


@pytest.fixture
def triton_env():
    """The kernels run on the GPU when one is here, else in Triton's interpreter, which
    tests/conftest.py switches on before anything imports triton."""
    if not _cuda() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA device, and triton was imported without TRITON_INTERPRET=1")


class OpsNet(nn.Module):
    """Every kernel and geometry the GPU path has: strided, dilated, grouped and 1x1 convs, a
    depthwise conv with channel multiplier 2 and a 5x5 kernel, residual ADD, squeeze-excitation
    (MEAN, sigmoid LUT, broadcast MUL), average and max pooling, SUB, a concat, tanh, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, stride=2, padding=1)
        self.dil = nn.Conv2d(24, 24, 3, padding=2, dilation=2, groups=2)
        self.dw = nn.Conv2d(24, 48, 5, padding=2, groups=24)
        self.pw = nn.Conv2d(48, 40, 1)
        self.band = nn.Conv2d(40, 40, (1, 5), padding=(0, 2))
        self.se1 = nn.Conv2d(40, 8, 1)
        self.se2 = nn.Conv2d(8, 40, 1)
        self.fc = nn.Linear(80, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem(x))
        x = x + F.relu(self.dil(x))
        x = F.relu(self.pw(self.dw(x)))
        x = self.band(x)
        gate = torch.sigmoid(self.se2(F.relu(self.se1(x.mean((2, 3), keepdim=True)))))
        x = x * gate
        avg = F.avg_pool2d(x, 2)
        peak = F.max_pool2d(x, 3, stride=2, padding=1)
        x = torch.tanh(torch.cat([avg, peak - avg], 1))
        return self.fc(x.mean((2, 3)))


def _qdq(model: nn.Module, shape, scheme, seed: int = 0):
    from convdeploy.exporters.onnx_export import OnnxExporter
    from convdeploy.quant import capture, quantize

    gen = torch.Generator().manual_seed(seed)
    batches = [torch.randn(8, *shape, generator=gen) for _ in range(3)]
    qm = quantize(capture(model.eval(), batches[0][:2]), scheme, batches, progress=False)
    work = scratch_dir("convdeploy-gpu-")
    return OnnxExporter(quantized=True, example=batches[0][:2]).export(qm, work), work


def _assert_every_tensor_equal(target: str, qdq, work: Path, x: np.ndarray) -> None:
    from convdeploy.targets import registry

    ref = registry.get("int-reference").compile(qdq, work)
    gpu = registry.get(target)
    assert gpu.check(qdq) == []
    got = gpu.compile(qdq, work).codes(x)
    expected = ref.codes(x)
    assert set(expected) <= set(got)
    # integer codes, and the floats at both ends (the same float32 steps): equal, every one
    for name, want in expected.items():
        np.testing.assert_array_equal(got[name], want, err_msg=f"{target}: {name}")


@pytest.mark.parametrize("target", ALGORITHMS)
def test_tiny_net_every_tensor_equals_int_reference(triton_env, target):
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    x = np.random.default_rng(3).standard_normal((5, 3, 16, 16)).astype(np.float32) * 2
    _assert_every_tensor_equal(target, qdq, qdq.path.parent, x)


@pytest.mark.parametrize("target", ALGORITHMS)
@pytest.mark.parametrize("scheme_name", ["w8a8", "w4a8", "w8a8-int8-act"])
def test_ops_net_every_tensor_equals_int_reference(triton_env, target, scheme_name):
    from convdeploy.quant.scheme import INT8_ACT, PRESETS

    scheme = (dataclasses.replace(PRESETS["w8a8"], activations=INT8_ACT)
              if scheme_name == "w8a8-int8-act" else PRESETS[scheme_name])
    torch.manual_seed(0)
    qdq, work = _qdq(OpsNet(), (3, 20, 20), scheme)
    x = np.random.default_rng(4).standard_normal((3, 3, 20, 20)).astype(np.float32) * 3
    _assert_every_tensor_equal(target, qdq, work, x)


def test_check_names_each_op_without_a_kernel(triton_env):
    from convdeploy.quant import W8A8
    from convdeploy.targets import registry

    class Unsupported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return torch.softmax(F.hardswish(self.conv(x)).mean((2, 3)), 1)

    torch.manual_seed(0)
    qdq, _ = _qdq(Unsupported(), (3, 8, 8), W8A8)
    reasons = registry.get("gpu-triton").check(qdq)
    assert any("HARD_SWISH has no gpu-triton kernel" in r for r in reasons), reasons
    assert any("SOFTMAX has no gpu-triton kernel" in r for r in reasons), reasons


def test_16_bit_activations_are_refused_before_any_work():
    from convdeploy.quant.scheme import W8A16
    from convdeploy.targets import registry

    reasons = registry.get("gpu-triton").check_scheme(W8A16)
    assert reasons == ["gpu-triton has no 16-bit activations (it runs 8-bit)"]


@pytest.mark.skipif(_cuda(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("name", [*ALGORITHMS, "gpu-torch", "gpu-torch-fp16"])
def test_gpu_targets_say_why_they_cannot_run_here(monkeypatch, name):
    from convdeploy.targets import registry

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = registry.get(name).unavailable()
    assert reason and "no CUDA device" in reason, reason


def test_kernels_compile_for_hopper_without_a_gpu(tmp_path):
    """Each kernel through Triton's real compiler to sm_90 PTX (the interpreter accepts code
    the GPU compiler refuses); the GEMMs must use the int8 tensor-core instructions."""
    pytest.importorskip("triton.backends.nvidia", reason="triton has no NVIDIA backend here")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # the child imports convdeploy and tests as this process does (installed or not; run
    # outside the checkout, whose convdeploy/ folder alone is not the package)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run([sys.executable, "-m", "tests.targets.triton_compile", "90"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(facts) >= {"_conv_gemm_kernel", "_conv_im2win_kernel", "_im2win_kernel",
                          "_depthwise_kernel",
                          "_add_kernel", "_mul_kernel", "_mean_kernel", "_pool_kernel"}
    for gemm in ("_conv_gemm_kernel", "_conv_im2win_kernel"):
        assert facts[gemm]["int8_mma"], f"{gemm} does not use int8 MMA"


def test_gpu_torch_takes_float_artifacts_only():
    from convdeploy.exporters.artifact import Artifact, ArtifactFormat
    from convdeploy.pipeline import _runs
    from convdeploy.targets import registry

    target = registry.get("gpu-torch")
    flt = Artifact("torch.float", ArtifactFormat.TORCH, "float")
    q = Artifact("torch.w8a8", ArtifactFormat.TORCH, "w8a8")
    assert _runs(target, flt) and not _runs(target, q)
    assert not _runs(registry.get("gpu-triton"), flt)


def test_tiny_net_on_the_gpu_equals_int_reference_in_the_report(tmp_path):
    """Only where a GPU is: gpu-triton through the pipeline, judged like every target."""
    if not _cuda():
        pytest.skip("no CUDA device: the interpreter tests above prove exactness")
    from tests.artifacts import tiny_artifacts

    _, qdq = tiny_artifacts()
    x = np.random.default_rng(5).standard_normal((64, 3, 16, 16)).astype(np.float32)
    for target in ALGORITHMS:
        _assert_every_tensor_equal(target, qdq, qdq.path.parent, x)
