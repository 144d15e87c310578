"""CIFAR-scale networks built from the modern blocks (``models.modern_blocks``), and one
recipe that trains any of them on the shared ``train-subset`` within about 20 minutes on 2
CPU cores.

Each network is a 3-stage pyramid for 32x32 inputs: a stride-2 stem (16x16), stages of 2
blocks at widths 32 / 64 / 128 with a stride-2 downsampling between them (8x8, 4x4), a global
average and a linear classifier. They are small (0.2-0.7 M parameters) so that a recipe fits
the CPU budget, and large enough that quantization error shows in accuracy.

    python -m convdeploy.models.modern_cifar --model convnext --train DIR [--eval DIR]

writes ``~/.cache/convdeploy/<model>-cifar10.pt`` (and ``.json``: epochs, minutes, test
accuracy). No weights are downloaded.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .mobilenetv2_cifar import CACHE
from .modern_blocks import (ChannelsFirstLayerNorm, ConvNeXtBlock, HorNetBlock, LSBlock,
                            MetaNeXtBlock, MobileNetV3Block)
from .training import save_weights

WIDTHS = (32, 64, 128)
DEPTHS = (2, 2, 2)


class Pyramid(nn.Module):
    """stem (stride 2) -> [blocks, downsample] x 3 -> mean -> norm -> linear."""

    def __init__(self, block: Callable[[int], nn.Module], norm: Callable[[int], nn.Module],
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, WIDTHS[0], 2, stride=2), norm(WIDTHS[0])]
        for i, (width, depth) in enumerate(zip(WIDTHS, DEPTHS)):
            if i:
                layers += [norm(WIDTHS[i - 1]), nn.Conv2d(WIDTHS[i - 1], width, 2, stride=2)]
            layers += [block(width) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.head_norm = nn.LayerNorm(WIDTHS[-1])
        self.classifier = nn.Linear(WIDTHS[-1], num_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_norm(self.features(x).mean((2, 3))))


class MobileNetV3Cifar(nn.Module):
    """MobileNetV3-Small-like: hard-swish, squeeze-excitation with hard-sigmoid gates."""

    # (expansion, output channels, kernel, stride, squeeze-excite)
    SETTINGS = ((4, 24, 3, 2, False), (3, 24, 3, 1, False), (3, 40, 5, 2, True),
                (3, 40, 5, 1, True), (4, 80, 3, 2, True), (3, 80, 3, 1, True))

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(16), nn.Hardswish()]
        cin = 16
        for expand, cout, kernel, stride, se in self.SETTINGS:
            layers.append(MobileNetV3Block(cin, cout, expand, kernel, stride, se))
            cin = cout
        layers += [nn.Conv2d(cin, 256, 1, bias=False), nn.BatchNorm2d(256), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(256, num_classes)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02 if isinstance(m, nn.Linear) else 0.1)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def convnext() -> nn.Module:
    return Pyramid(ConvNeXtBlock, lambda c: ChannelsFirstLayerNorm(c, eps=1e-6))


def inceptionnext() -> nn.Module:
    return Pyramid(MetaNeXtBlock, nn.BatchNorm2d)


def hornet() -> nn.Module:
    return Pyramid(HorNetBlock, lambda c: ChannelsFirstLayerNorm(c, eps=1e-6))


def lsnet() -> nn.Module:
    return Pyramid(LSBlock, nn.BatchNorm2d)


def mobilenetv3() -> nn.Module:
    return MobileNetV3Cifar()


# name -> (factory, epochs): epochs sized so that each recipe stays within ~20 min on 2 cores
# (measured with one thread beside other jobs on the 2-core EPYC: LSNet 0.7 min per epoch,
# ConvNeXt 0.6, MobileNetV3 1.0; InceptionNeXt and HorNet about twice ConvNeXt's steps)
MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "convnext": (convnext, 30), "inceptionnext": (inceptionnext, 15),
    "hornet": (hornet, 15), "lsnet": (lsnet, 24), "mobilenetv3": (mobilenetv3, 18)}


def weights_path(name: str) -> Path:
    return CACHE / f"{name}-cifar10.pt"


def _param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on conv/linear weights only (not norms, biases, layer scales)."""
    decayed, free = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            dense = isinstance(module, (nn.Conv2d, nn.Linear)) and p.ndim > 1
            (decayed if dense else free).append(p)
    return [{"params": decayed, "weight_decay": 0.05}, {"params": free, "weight_decay": 0.0}]


def train(name: str, train_dir: Path, *, epochs: int | None = None, batch_size: int = 128,
          lr: float = 3e-3, seed: int = 0, eval_dir: Path | None = None,
          log=print) -> tuple[nn.Module, dict]:
    """AdamW, one-cycle schedule, label smoothing 0.1, crop+flip augmentation."""
    from .augment import random_crop_flip
    from .datasets import load_images
    from .training import fit, one_cycle_schedule, test_accuracy
    from .zoo import CIFAR_PREPROCESS

    factory, default_epochs = MODELS[name]
    epochs = epochs or default_epochs
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = load_images(Path(train_dir), CIFAR_PREPROCESS)
    x, y = torch.from_numpy(data.normalized(CIFAR_PREPROCESS)), torch.from_numpy(data.labels)
    model = factory()
    opt = torch.optim.AdamW(_param_groups(model), lr=lr)
    sched = one_cycle_schedule(opt, lr=lr, epochs=epochs, samples=len(x), batch_size=batch_size)
    minutes = fit(model, x, y, opt, sched, gen, epochs=epochs, batch_size=batch_size,
                  augment=random_crop_flip, label_smoothing=0.1, log=log, label=f"{name} ")
    summary = {"model": name, "epochs": epochs, "train_images": len(x),
               "batch_size": batch_size, "seed": seed, "optimizer": "AdamW lr 3e-3 wd 0.05",
               "params": sum(p.numel() for p in model.parameters()), "train_minutes": minutes,
               "threads": torch.get_num_threads()}
    if eval_dir is not None:
        summary["test_accuracy"] = test_accuracy(model, eval_dir, CIFAR_PREPROCESS)
        log(f"{name} test accuracy {summary['test_accuracy']:.4f}")
    return model.eval(), summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a modern CIFAR-10 ConvNet on CPU.")
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--train", type=Path, required=True, help="ImageFolder training split")
    parser.add_argument("--eval", type=Path, help="ImageFolder test split")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--out", type=Path, help="default: ~/.cache/convdeploy/MODEL-cifar10.pt")
    args = parser.parse_args(argv)
    model, summary = train(args.model, args.train, epochs=args.epochs, eval_dir=args.eval)
    out = args.out or weights_path(args.model)
    save_weights(model, summary, out)
    print(f"wrote {out}: {summary}")


if __name__ == "__main__":
    main()
