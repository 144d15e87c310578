"""Shared fixtures: tiny seeded models built in code; no network, no ../shared."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# Triton decides when it is imported whether its kernels run on a GPU or in its interpreter
# (numpy, on the CPU); torch.export imports it. Without a GPU the test process uses the
# interpreter, with which tests/targets/test_gpu_triton.py proves the GPU kernels exact.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = Path(os.environ.get("CONVDEPLOY_SHARED", Path(__file__).resolve().parents[2] / "shared"))

_SCRATCH: list[tempfile.TemporaryDirectory] = []


def scratch_dir(prefix: str) -> Path:
    """A new directory for what outlives one test (artifacts cached for the session): under
    one root per test run, removed when the run ends (a test's own files go to ``tmp_path``).
    Each run used to leave its exports in /tmp: 4 GB after a few hundred runs."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="convdeploy-tests-"))
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_SCRATCH[0].name))


class TinyNet(nn.Module):
    """Covers the ops that matter to the numerics contract: conv+BN+ReLU, depthwise conv with
    ReLU6, a residual add with an option-A shortcut (strided slice + channel zero-pad),
    max-pool, global average pool, linear."""

    def __init__(self, in_ch: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                                nn.BatchNorm2d(8), nn.ReLU6())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(16))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.stem(x))
        shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))
        x = F.relu(self.down(x) + shortcut)
        x = self.pool(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def seeded_tiny_net(seed: int = 0, in_ch: int = 3) -> TinyNet:
    """A TinyNet with non-trivial BatchNorm statistics (folding must matter)."""
    torch.manual_seed(seed)
    model = TinyNet(in_ch)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


class LayerScaledNet(nn.Module):
    """A channels-last Linear over a 128-channel image (a MatMul, as ConvNeXt's pwconv2) whose
    output channels span 10**0 .. 10**-8 in magnitude, as a layer scale folded into it leaves
    them: the last channels' requantization multipliers fall far below
    ``MIN_REQUANT_MULTIPLIER`` unless floored. Feed it non-negative inputs (input zero point 0,
    as after a GELU): the HTP fault below the floor shows with those, not with zero point ~128."""

    channels = 128

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(self.channels, 16)
        with torch.no_grad():
            gamma = torch.logspace(0, -8, 16)
            self.fc.weight.mul_(gamma.reshape(-1, 1))
            self.fc.bias.mul_(gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def layer_scaled_net(seed: int = 0) -> LayerScaledNet:
    torch.manual_seed(seed)
    return LayerScaledNet().eval()


@pytest.fixture
def tiny_net() -> TinyNet:
    return seeded_tiny_net()


@pytest.fixture
def tiny_batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(16, 3, 16, 16, generator=gen) for _ in range(4)]


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "models").is_dir() or not (SHARED / "data" / "cifar10").is_dir():
        pytest.skip(f"../shared (real CIFAR-10 and checkpoints) not found at {SHARED}")
    return SHARED
