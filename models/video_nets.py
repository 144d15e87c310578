"""Video ConvNets of the zoo: SqueezeTime and P3D at CIFAR scale. Both take (N, C, T, H, W).

- ``SqueezeTime`` (Zhai et al. 2024, "No Time to Waste: Squeeze Time into Channel for Mobile
  Video Understanding"; structure from the official code, Apache-2.0): time folded into
  channels (channel = c * T + t), then a 2-D network of Channel-Time Learning (CTL) blocks:
  an SE-style gate ``sigmoid(conv1x1(relu(bn(conv1x1(avgpool(x))))))`` without reduction, a
  "temporal" 1x1 conv on gate * x, and a spatial branch (the official ``SpatialConv``)
  ``conv3x3(x) * sigmoid(conv3x3(relu(bn(conv7x7(relu(bn(conv3x3(gate * x))) + pos_embed)))))``
  whose middle runs on 16 channels (a dense 7x7 convolution) with a learned position embedding;
  the two summed and batch-normalised (a BatchNorm after an Add). Downsampling by a depthwise
  2x2 stride-2 conv + BN. Depth and width reduced to train on 2 CPU cores.
- ``P3D`` (Qiu et al. 2017, "Learning Spatio-Temporal Representation with Pseudo-3D Residual
  Networks"): 3x3x3 convolutions factored into a 1x3x3 spatial and a 3x1x1 temporal
  ``nn.Conv3d``, in bottleneck blocks cycling P3D-A (serial), P3D-B (parallel) and P3D-C
  (serial with a shortcut from the spatial output).
"""
from __future__ import annotations

import torch
from torch import nn


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class ChannelTimeLearning(nn.Module):
    """SqueezeTime's CTL module on ``c`` channels of an ``hw``-sized map (the spatial branch's
    middle on ``inner`` channels, 16 in the official code)."""

    def __init__(self, c: int, hw: tuple[int, int], inner: int = 16) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1),
                                  nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1),
                                  nn.Sigmoid())
        self.temporal = nn.Conv2d(c, c, 1, bias=False)
        self.spatial = nn.Conv2d(c, c, 3, padding=1)
        self.attend = nn.Sequential(nn.Conv2d(c, inner, 3, padding=1), nn.BatchNorm2d(inner),
                                    nn.ReLU(inplace=True))
        self.attend_out = nn.Sequential(nn.Conv2d(inner, inner, 7, padding=3),
                                        nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
                                        nn.Conv2d(inner, c, 3, padding=1), nn.Sigmoid())
        self.pos_embed = nn.Parameter(torch.zeros(1, inner, *hw))
        nn.init.kaiming_normal_(self.pos_embed, mode="fan_out", nonlinearity="relu")
        self.norm = nn.BatchNorm2d(c)  # after the Add of the two linear branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = self.gate(x) * x
        attention = self.attend_out(self.attend(gated) + self.pos_embed)
        return self.norm(self.temporal(gated) + self.spatial(x) * attention)


class SqueezeTimeBlock(nn.Module):
    """Bottleneck with a CTL module in the middle; stride 2 by a depthwise 2x2 conv + BN."""

    def __init__(self, cin: int, mid: int, cout: int, hw: tuple[int, int], stride: int = 1):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), *_bn_relu(mid))
        self.down = (nn.Sequential(nn.Conv2d(mid, mid, 2, stride=2, groups=mid, bias=False),
                                   nn.BatchNorm2d(mid)) if stride == 2 else nn.Identity())
        out_hw = (hw[0] // stride, hw[1] // stride)
        self.ctl = ChannelTimeLearning(mid, out_hw)
        self.expand = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False),
                                    nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv2d(cin, cin, stride, stride=stride, groups=cin, bias=False)
            if stride == 2 else nn.Identity(),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.ctl(self.down(self.reduce(x))))
        return torch.relu(y + self.shortcut(x))


class SqueezeTime(nn.Module):
    def __init__(self, num_classes: int, frames: int = 8, channels: int = 3,
                 size: tuple[int, int] = (32, 32), widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels * frames, widths[0], 3, padding=1,
                                            bias=False), *_bn_relu(widths[0]))
        blocks, cin, hw = [], widths[0], size
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks.append(SqueezeTimeBlock(cin, w // 2, w, hw, stride))
            hw, cin = (hw[0] // stride, hw[1] // stride), w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        x = self.blocks(self.stem(x.reshape(n, c * t, h, w)))  # channel = c * T + t
        return self.fc(x.mean((2, 3)))


def _bn3_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm3d(c), nn.ReLU(inplace=True))


class P3DBlock(nn.Module):
    """Bottleneck: 1x1x1 reduce, the factored 3x3x3 in form A, B or C, 1x1x1 expand."""

    def __init__(self, cin: int, mid: int, cout: int, form: str, stride: int = 1):
        super().__init__()
        self.form = form
        self.reduce = nn.Sequential(nn.Conv3d(cin, mid, 1, bias=False), *_bn3_relu(mid))
        self.spatial = nn.Sequential(nn.Conv3d(mid, mid, (1, 3, 3), stride=(1, stride, stride),
                                               padding=(0, 1, 1), bias=False),
                                     nn.BatchNorm3d(mid))
        self.temporal = nn.Sequential(nn.Conv3d(mid, mid, (3, 1, 1), padding=(1, 0, 0),
                                                bias=False), nn.BatchNorm3d(mid))
        self.expand = nn.Sequential(nn.Conv3d(mid, cout, 1, bias=False), nn.BatchNorm3d(cout))
        self.shortcut = nn.Identity() if cin == cout and stride == 1 else nn.Sequential(
            nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False),
            nn.BatchNorm3d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        if self.form == "A":  # serial: S then T
            y = self.temporal(torch.relu(self.spatial(y)))
        elif self.form == "B":  # parallel: S + T (T on the strided input's grid)
            s = self.spatial(y)
            y = s + self.temporal(y[..., ::self.spatial[0].stride[1], ::self.spatial[0].stride[2]])
        else:  # C: S, then T on it, plus a shortcut from S
            s = torch.relu(self.spatial(y))
            y = s + self.temporal(s)
        return torch.relu(self.expand(torch.relu(y)) + self.shortcut(x))


class P3D(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(channels, widths[0], (1, 3, 3), padding=(0, 1, 1),
                                            bias=False), *_bn3_relu(widths[0]))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(P3DBlock(cin, w // 2, w, "ABC"[i % 3], stride=1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3, 4)))
