"""Quantization-aware fine-tuning of a ``QuantizedModel`` (whitepaper section 3, Jacob et al.).

The project's own fake-quant graph is trained directly: the model that is fine-tuned is the
model that is simulated and exported, so the Encodings after training are exactly the numbers
that ran in the forward pass. Rounding passes gradients straight through (STE); with
``learn_ranges`` the activation and weight scales are trained too (LSQ-style gradients, which the
STE formulation gives for free). BatchNorm is already folded with its frozen statistics (the
whitepaper's recommended end state); bias scales follow ``s_in * s_w`` as both move.

Training state (weights, scales, optimizer, schedule, epoch, history) is checkpointed atomically
after every epoch; ``finetune`` resumes from a checkpoint that matches the run.
"""
from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from convdeploy.errors import ConvdeployError

from .config import QATConfig
from .fakequant import ActivationQuantizer, Mode, WeightQuantizer

CHECKPOINT_VERSION = 1


def _trainable(qm, cfg: QATConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights and biases, quantizer scales) with gradients switched on."""
    params = []
    for name, p in qm.graph.named_parameters():
        if not name.startswith("_quantizers"):
            p.requires_grad_(True)
            params.append(p)
    scales = []
    if cfg.learn_ranges:
        for q in qm.quantizers.values():
            if isinstance(q, (ActivationQuantizer, WeightQuantizer)):
                q.scale.requires_grad_(True)
                scales.append(q.scale)
    return params, scales


def _freeze(qm) -> None:
    for p in qm.graph.parameters():
        p.requires_grad_(False)
    for q in qm.quantizers.values():
        if isinstance(q, (ActivationQuantizer, WeightQuantizer)):
            q.scale.requires_grad_(False)


def _save_checkpoint(path: Path, state: dict) -> None:
    from convdeploy.files import write_bytes_atomic

    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path, run_id: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to this run (same model, scheme, settings)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: say which and how to fix
        raise ConvdeployError(f"cannot read QAT checkpoint {path}: {str(exc)[:200]}",
                              fix="delete it to start fine-tuning from scratch") from exc
    if state.get("version") != CHECKPOINT_VERSION or state.get("run_id") != run_id:
        raise ConvdeployError(
            f"QAT checkpoint {path} belongs to another run ({state.get('run_id')!r})",
            fix="pass another --checkpoint path, or delete it to start from scratch")
    return state


def finetune(qm, x: torch.Tensor, y: torch.Tensor, cfg: QATConfig, *,
             augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
             evaluate: Callable[[object], float] | None = None,
             checkpoint: Path | None = None, run_id: str = "",
             progress: bool = True, quantized: bool = True) -> list[dict]:
    """Fine-tune calibrated ``qm`` in simulation on ``x`` (normalised NCHW) and labels ``y``.

    ``quantized=False`` trains the same folded graph with its quantizers off: the float model
    fine-tuned by the same recipe, the baseline a QAT result is fairly compared with.

    ``evaluate(qm)`` (optional) gives the held-out accuracy after each epoch. Returns the
    per-epoch history; ``qm.encodings`` are refreshed from the trained scales.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    params, scales = _trainable(qm, cfg)
    groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    if scales:
        groups.append({"params": scales, "lr": cfg.lr * cfg.range_lr_factor, "weight_decay": 0})
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch)
    history: list[dict] = []
    start_epoch = 0
    state = load_checkpoint(checkpoint, run_id) if checkpoint else None
    if state is not None:
        qm.graph.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        history, start_epoch = state["history"], state["epoch"]
        print(f"resuming QAT from {checkpoint} after epoch {start_epoch}/{cfg.epochs}")
    qm.set_mode(Mode.QUANT if quantized else Mode.OFF)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        qm.graph.train()
        perm = torch.randperm(len(x), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(range(0, len(x), cfg.batch_size), desc=f"qat epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for i in bar:
            idx = perm[i:i + cfg.batch_size]
            xb = augment(x[idx], gen) if augment else x[idx]
            logits = qm.graph(xb)
            loss = F.cross_entropy(logits, y[idx], label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise ConvdeployError(
                    f"fine-tuning diverged in epoch {epoch + 1} (loss {float(loss.detach())}, step "
                    f"{i // cfg.batch_size + 1}); the BN-folded graph trains without BatchNorm's "
                    f"damping", fix=f"lower --lr (now {cfg.lr:g}; 1e-3 is the tested default)")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for s in scales:
                    s.clamp_(min=1e-8)
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == y[idx]).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        qm.graph.eval()
        entry = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                 "seconds": time.perf_counter() - t0}
        if evaluate is not None:
            with torch.no_grad():
                entry["eval_accuracy"] = evaluate(qm)
        history.append(entry)
        if progress:
            print(f"qat epoch {epoch + 1}/{cfg.epochs}: loss {entry['loss']:.4f}, train "
                  f"{entry['train_accuracy']:.4f}" + (f", eval {entry['eval_accuracy']:.4f}"
                                                      if "eval_accuracy" in entry else ""))
        if checkpoint is not None:
            _save_checkpoint(checkpoint, {
                "version": CHECKPOINT_VERSION, "run_id": run_id, "epoch": epoch + 1,
                "model": qm.graph.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "history": history, "config": asdict(cfg)})
    _freeze(qm)
    qm.graph.eval()
    qm.fine_tuned = True
    qm.refresh_encodings()
    return history
