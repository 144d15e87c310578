"""Supervised training shared by the zoo's recipes: epochs, test accuracy, cached weights."""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def one_cycle_schedule(opt, *, lr: float, epochs: int, samples: int, batch_size: int):
    """The recipes' schedule: one cycle up to ``lr`` (10% warm-up), stepped per batch."""
    steps = epochs * ((samples + batch_size - 1) // batch_size)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, pct_start=0.1, total_steps=steps)


def train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, sched,
                gen: torch.Generator, *, batch_size: int,
                augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                label_smoothing: float = 0.0, device: str = "cpu") -> float:
    """Shuffle with ``gen``, augment each batch, step optimizer and schedule per batch; returns
    the mean training loss. ``x``, ``y`` and ``gen`` stay on the CPU (the same shuffles and
    crops on every device); each augmented batch moves to ``device``, where ``model`` is."""
    model.train()
    perm = torch.randperm(len(x), generator=gen)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        loss = F.cross_entropy(model(augment(x[idx], gen).to(device)), y[idx].to(device),
                               label_smoothing=label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt, sched, gen: torch.Generator,
        *, epochs: int, batch_size: int,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
        label_smoothing: float = 0.0, log=print, label: str = "", device: str = "cpu") -> float:
    """``epochs`` of ``train_epoch``, logging each; returns the minutes taken."""
    start = time.perf_counter()
    for epoch in range(epochs):
        loss = train_epoch(model, x, y, opt, sched, gen, batch_size=batch_size,
                           augment=augment, label_smoothing=label_smoothing, device=device)
        log(f"{label}epoch {epoch + 1}/{epochs} loss {loss:.4f} "
            f"({(time.perf_counter() - start) / 60:.1f} min)")
    return round((time.perf_counter() - start) / 60, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x, labels, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on normalised images ``x`` (numpy NCHW)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(torch.from_numpy(x[i:i + batch_size]))
        correct += int((logits.argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(x)


def test_accuracy(model: nn.Module, eval_dir: Path, preprocess) -> float:
    from .datasets import load_images

    test = load_images(Path(eval_dir), preprocess)
    return evaluate(model, test.normalized(preprocess), test.labels)


def save_weights(model: nn.Module, summary: dict, out: Path) -> None:
    """The state dict (and the recipe's summary beside it, ``.json``), written atomically."""
    from convdeploy.files import write_bytes_atomic, write_text_atomic

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(out, buf.getvalue())
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
