"""Blocks of the ConvNets users deploy now, written so that every op they need has an integer
kernel or a float island in convdeploy (see ``exporters.lowering``).

- ``ConvNeXtBlock``: Liu et al., "A ConvNet for the 2020s", CVPR 2022 (7x7 depthwise,
  channels-last LayerNorm, inverted MLP with GELU, layer scale).
- ``InceptionDWConv`` / ``MetaNeXtBlock``: Yu et al., "InceptionNeXt: When Inception Meets
  ConvNeXt", CVPR 2024 (channels split into an identity part, a 3x3 square and 1xk / kx1 band
  depthwise kernels, concatenated; BatchNorm, MLP, layer scale).
- ``GnConv`` / ``HorNetBlock``: Rao et al., "HorNet: Efficient High-Order Spatial Interactions
  with Recursive Gated Convolutions", NeurIPS 2022 (recursive gating products of projections
  and a 7x7 depthwise convolution).
- ``LSConv`` / ``LSBlock``: Wang et al., "LSNet: See Large, Focus Small", CVPR 2025
  (large-kernel depthwise perception generating per-position 3x3 aggregation weights, applied
  to the features by activation x activation products).
- ``SqueezeExcite`` / ``MobileNetV3Block``: Howard et al., "Searching for MobileNetV3", ICCV
  2019 (hard-swish, squeeze-excitation with a hard-sigmoid gate).

Channels-first LayerNorm is written as permute -> ``nn.LayerNorm`` -> permute, so that it
exports as one LayerNormalization (a float island on integer targets, the permutes free).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's downsampling norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, expand: int = 4, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, expand * dim)
        self.pwconv2 = nn.Linear(expand * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class InceptionDWConv(nn.Module):
    """The Inception depthwise token mixer: identity | 3x3 | 1xk | kx1 on channel groups."""

    def __init__(self, dim: int, square: int = 3, band: int = 11,
                 branch_ratio: float = 0.125) -> None:
        super().__init__()
        g = int(dim * branch_ratio)
        self.square = nn.Conv2d(g, g, square, padding=square // 2, groups=g)
        self.band_w = nn.Conv2d(g, g, (1, band), padding=(0, band // 2), groups=g)
        self.band_h = nn.Conv2d(g, g, (band, 1), padding=(band // 2, 0), groups=g)
        self.split = (dim - 3 * g, g, g, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_id, x_sq, x_w, x_h = torch.split(x, self.split, dim=1)
        return torch.cat([x_id, self.square(x_sq), self.band_w(x_w), self.band_h(x_h)], 1)


class MetaNeXtBlock(nn.Module):
    def __init__(self, dim: int, expand: int = 4, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.mixer = InceptionDWConv(dim)
        self.norm = nn.BatchNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, expand * dim, 1)
        self.fc2 = nn.Conv2d(expand * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(F.gelu(self.fc1(self.norm(self.mixer(x)))))
        return x + self.gamma * y


class GnConv(nn.Module):
    """Recursive gated convolution of order ``order``: ``p_{k+1} = f_k(p_k) * q_k``."""

    def __init__(self, dim: int, order: int = 3, scale: float = 1.0 / 3.0) -> None:
        super().__init__()
        self.dims = [dim // 2 ** i for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 7, padding=3,
                                groups=sum(self.dims))
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1)
                                 for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pwa, abc = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(abc) * self.scale, self.dims, dim=1)
        y = pwa * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            y = pw(y) * gate
        return self.proj_out(y)


class HorNetBlock(nn.Module):
    def __init__(self, dim: int, expand: int = 4, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = ChannelsFirstLayerNorm(dim, eps=1e-6)
        self.gnconv = GnConv(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, expand * dim)
        self.pwconv2 = nn.Linear(expand * dim, dim)
        self.gamma1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1 * self.gnconv(self.norm1(x))
        y = self.gamma2 * self.pwconv2(F.gelu(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + y.permute(0, 3, 1, 2)


class LSConv(nn.Module):
    """"See large": a 1x1 reduction, a large-kernel depthwise convolution and a 1x1 projection
    perceive the context and generate, per position and per channel group, the 9 weights of a
    3x3 kernel; "focus small": those weights aggregate the 3x3 neighbourhood of the features
    (products of two activations, summed)."""

    def __init__(self, dim: int, groups: int = 2, large: int = 7, hidden: int = 16) -> None:
        super().__init__()
        self.groups = groups
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.large = nn.Conv2d(hidden, hidden, large, padding=large // 2, groups=hidden)
        self.generate = nn.Conv2d(hidden, groups * 9, 1)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.generate(F.relu(self.large(F.relu(self.reduce(x)))))
        h, w = x.shape[2:]
        padded = F.pad(x, (1, 1, 1, 1))
        parts = []
        for xg, wg in zip(torch.chunk(padded, self.groups, 1), torch.chunk(weights, self.groups, 1)):
            taps = [xg[:, :, i:i + h, j:j + w] * wg[:, 3 * i + j:3 * i + j + 1]
                    for i in range(3) for j in range(3)]
            total = taps[0]
            for tap in taps[1:]:
                total = total + tap
            parts.append(total)
        return self.bn(torch.cat(parts, 1))


class LSBlock(nn.Module):
    def __init__(self, dim: int, expand: int = 2) -> None:
        super().__init__()
        self.mixer = LSConv(dim)
        self.fc1 = nn.Conv2d(dim, expand * dim, 1)
        self.fc2 = nn.Conv2d(expand * dim, dim, 1)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(x)
        return x + self.bn(self.fc2(F.relu(self.fc1(x))))


class SqueezeExcite(nn.Module):
    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(dim, dim // reduction, 1)
        self.expand = nn.Conv2d(dim // reduction, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)


class MobileNetV3Block(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, squeeze-excitation, linear 1x1."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int,
                 se: bool = True) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False),
                                    nn.BatchNorm2d(hidden), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.Hardswish())
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y
