"""One epoch of supervised training, shared by the zoo's training recipes."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, sched,
                gen: torch.Generator, *, batch_size: int,
                augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                label_smoothing: float = 0.0) -> float:
    """Shuffle with ``gen``, augment each batch, step optimizer and schedule per batch; returns
    the mean training loss."""
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx],
                               label_smoothing=label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)
