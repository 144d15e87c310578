"""Models the audit tests build by import path (``tests.audit.models:NAME``)."""
from torch import nn


def erf_net() -> nn.Module:
    """A net with an erf, which the integer path does not lower (onnxruntime runs it)."""
    import torch

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(torch.erf(self.conv(x)).flatten(1))

    return Net().eval()
