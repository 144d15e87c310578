"""Each integer op, on a tiny seeded model: the integer reference equals LiteRT's reference
kernels bit for bit, ONNX Runtime stays within an LSB or two, the float .tflite equals torch."""
import numpy as np
import pytest
import torch
from torch import nn

from convdeploy.exporters.lowering import OpKind
from tests.integer_ops import roundtrip

torch.manual_seed(0)


def _check(rt, *, ort_lsb: float = 2.0) -> None:
    np.testing.assert_array_equal(rt.litert_ref, rt.int_reference)
    assert rt.lsb(rt.ort) <= ort_lsb
    np.testing.assert_allclose(rt.float_litert, rt.float_torch, rtol=1e-4, atol=1e-4)


class Permutes(nn.Module):
    """ConvNeXt-style channels-last round trip, a reshape across axes, squeeze/unsqueeze."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x)).permute(0, 2, 3, 1)  # N, 4, 4, 8
        y = y.reshape(y.shape[0], 16, 8).transpose(1, 2)  # N, 8, 16
        y = y.unsqueeze(-1).squeeze(-1)
        return self.fc(y.flatten(1))


class AudioStyle(nn.Module):
    """A 1-D signal fed as (N, 1, L, 1) inside forward (the third-party audio ConvNet's form),
    then back to 4-D channels-first through a reshape that is not layout-free."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, (5, 1), padding=(2, 0))
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 8, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x[:, None, :, None]))  # N, 6, 32, 1
        y = y.reshape(y.shape[0], 6, 4, 8)  # layout-sensitive on both sides
        y = torch.relu(self.conv2(y))
        return self.fc(y.permute(0, 3, 1, 2).flatten(1))


@pytest.mark.parametrize("model,shape", [(Permutes(), (3, 4, 4)), (AudioStyle(), (32,))],
                         ids=["permutes", "audio-unsqueeze"])
def test_shape_only_ops_are_bit_exact(model, shape):
    rt = roundtrip(model, shape)
    kinds = {op.kind for op in rt.graph.ops}
    assert {OpKind.TRANSPOSE, OpKind.RESHAPE} <= kinds
    _check(rt)


class BatchNormAfterRelu(nn.Module):
    """BatchNorm where no conv precedes it: one before an unpadded conv (folds into it), one
    before a padded conv and one before a mean (each a 1x1 depthwise conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, (9, 1), padding=(4, 0))
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, (4, 1), stride=(2, 1), groups=2)
        self.bn2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 6, (3, 1), padding=(1, 0))
        self.bn3 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)
        for bn in (self.bn1, self.bn2, self.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.3, 0.3)

    def forward(self, x):
        y = self.bn1(torch.relu(self.c1(x[:, None, :, None])))
        y = self.bn2(torch.relu(self.c2(y)))
        y = self.bn3(torch.relu(self.c3(y)))
        return self.fc(y.mean((2, 3)))


def test_batchnorm_without_a_conv_before_it_folds_forward_or_becomes_depthwise():
    from convdeploy.quant import capture, fold_batchnorm

    model = BatchNormAfterRelu().eval()
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    gm = capture(model, x)
    folded = fold_batchnorm(gm)
    assert len(folded) == 3
    assert not any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    convs = [n for n in gm.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert len(convs) == 5  # c1, c2 (bn1 folded in), bn2 and bn3 as depthwise 1x1, c3
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)
    rt = roundtrip(model, (64,))
    assert [op.kind for op in rt.graph.ops].count(OpKind.DEPTHWISE_CONV) == 2
    _check(rt)
