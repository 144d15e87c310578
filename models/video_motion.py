"""Training recipes of the video zoo on the camera-motion benchmark (``motion_clips``).

Train clips come from the shared CIFAR-10 ``train-subset`` photographs, test clips from its
``test`` split (disjoint source images), both generated with a fixed seed and cached as .npz.
Each recipe also trains the single-frame baseline (the same network, every clip replaced by one
of its frames repeated T times) and reports both accuracies: the baseline near chance proves
the task needs time.

    python -m convdeploy.models.video_motion --model p3d \\
        --train ../shared/data/cifar10/train-subset --eval ../shared/data/cifar10/test
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .motion_clips import CLASSES, MotionConfig
from .spec import Preprocess

CACHE = Path.home() / ".cache" / "convdeploy"
FRAMES = 8
# clips are generated at model size; normalised around mid-grey
VIDEO_PREPROCESS = Preprocess(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                              frames=FRAMES)
TRAIN_CLIPS, TEST_CLIPS = 5000, 2500


def squeezetime() -> nn.Module:
    from .video_nets import SqueezeTime

    return SqueezeTime(len(CLASSES), frames=FRAMES, widths=(24, 48, 96))


def p3d() -> nn.Module:
    from .video_nets import P3D

    return P3D(len(CLASSES), widths=(16, 32, 64))


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {"squeezetime": (squeezetime, 12),
                                                         "p3d": (p3d, 12)}


# the recipe's P3D, shipped for the video demo (test accuracy in the .json beside it)
SHIPPED = {"p3d": Path(__file__).parent / "weights" / "p3d-motion.pt"}


def weights_path(name: str) -> Path:
    """Where the recipe writes (and the zoo reads) a model's weights."""
    return CACHE / f"{name}-motion.pt"


def zoo_weights(name: str) -> Path:
    """The weights the zoo loads by default: the shipped file, else the recipe's output."""
    return SHIPPED.get(name, weights_path(name))


def motion_set(source: Path, clips: int, seed: int):
    """The benchmark's clips from the photographs in ``source``, cached by (source, n, seed)."""
    from .clips import ClipSet
    from .datasets import load_images
    from .motion_clips import generate

    cache = CACHE / f"motion-{source.name}-{clips}-{seed}.npz"
    if cache.exists():
        data = np.load(cache)
        return ClipSet(data["x"], data["y"], str(cache), list(CLASSES))
    photos = load_images(source, Preprocess(size=(32, 32)), progress=False).images
    made = generate(photos, clips, cfg=MotionConfig(frames=FRAMES), seed=seed, upscale=4)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".part.npz")
    np.savez_compressed(tmp, x=made.images, y=made.labels)
    tmp.replace(cache)
    return made


def single_frame(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each clip (N, C, T, H, W) replaced by one of its frames, at random, repeated T times."""
    pick = torch.randint(0, x.shape[2], (len(x),), generator=gen)
    frames = x[torch.arange(len(x)), :, pick]
    return frames[:, :, None].expand_as(x).contiguous()


def train(name: str, train_source: Path, *, eval_source: Path | None = None,
          epochs: int | None = None, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          baseline: bool = False, log=print) -> tuple[nn.Module, dict]:
    """AdamW, one-cycle schedule, label smoothing 0.1; no flips (they would swap pan labels).
    ``baseline`` trains the single-frame baseline instead."""
    from .training import evaluate, fit, one_cycle_schedule

    factory, default_epochs = MODELS[name]
    epochs = epochs or default_epochs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = motion_set(Path(train_source), TRAIN_CLIPS, seed=1)
    x, y = torch.from_numpy(data.normalized(VIDEO_PREPROCESS)), torch.from_numpy(data.labels)
    model = factory()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = one_cycle_schedule(opt, lr=lr, epochs=epochs, samples=len(x), batch_size=batch_size)
    view = (lambda b, g: single_frame(b, g)) if baseline else (lambda b, g: b)
    label = f"{name}{' single-frame' if baseline else ''} "
    minutes = fit(model, x, y, opt, sched, gen, epochs=epochs, batch_size=batch_size,
                  augment=view, label_smoothing=0.1, log=log, label=label)
    summary = {"model": name, "task": "camera-motion clips (models/motion_clips.py)",
               "classes": len(CLASSES), "frames": FRAMES, "epochs": epochs,
               "train_clips": len(x), "batch_size": batch_size, "seed": seed,
               "optimizer": f"AdamW lr {lr:g} wd 0.05", "single_frame": baseline,
               "params": sum(p.numel() for p in model.parameters()), "train_minutes": minutes,
               "threads": torch.get_num_threads()}
    if eval_source is not None:
        test = motion_set(Path(eval_source), TEST_CLIPS, seed=2)
        tx = test.normalized(VIDEO_PREPROCESS)
        if baseline:
            tx = single_frame(torch.from_numpy(tx), torch.Generator().manual_seed(3)).numpy()
        summary["test_accuracy"] = evaluate(model, tx, test.labels, batch_size=250)
        summary["chance"] = 1 / len(CLASSES)
        log(f"{label}test accuracy {summary['test_accuracy']:.4f} (chance "
            f"{summary['chance']:.4f})")
    return model.eval(), summary


def main(argv: list[str] | None = None) -> None:
    from .training import save_weights

    parser = argparse.ArgumentParser(description="Train a video ConvNet on camera-motion clips.")
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--train", type=Path, required=True,
                        help="photographs for the training clips (ImageFolder)")
    parser.add_argument("--eval", type=Path, help="photographs for the test clips")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--single-frame", action="store_true",
                        help="train the single-frame baseline (not saved as the zoo weights)")
    parser.add_argument("--out", type=Path, help="default: ~/.cache/convdeploy/MODEL-motion.pt")
    args = parser.parse_args(argv)
    model, summary = train(args.model, args.train, eval_source=args.eval, epochs=args.epochs,
                           baseline=args.single_frame)
    out = args.out or (weights_path(args.model).with_name(f"{args.model}-motion-single-frame.pt")
                       if args.single_frame else weights_path(args.model))
    save_weights(model, summary, out)
    print(f"wrote {out}: {summary}")


if __name__ == "__main__":
    main()
