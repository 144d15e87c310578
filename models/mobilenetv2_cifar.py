"""MobileNetV2 (Sandler et al. 2018) for 32x32 inputs, width 1.0, and the project's recipe to
train it on the shared CIFAR-10 ``train-subset``.

The only change from the ImageNet network is the stem: a stride-1 3x3 convolution, so a 32x32
image keeps its resolution through the first stage. The inverted
residual blocks (expand 1x1 -> depthwise 3x3 -> linear 1x1, ReLU6) are the published ones; this
is the depthwise-separable network that per-tensor quantization is known to hurt.

No weights are downloaded: ``python -m convdeploy.models.mobilenetv2_cifar --train DIR`` trains
from scratch on CPU (60 epochs of the 10,000-image subset, 58 minutes on 2 cores) and
caches the state dict under ``~/.cache/convdeploy/``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .training import save_weights

# (expansion t, output channels c, repeats n, first stride s): Table 2 of the paper. With the
# stride-1 stem a 32x32 input goes 32 -> 16 -> 8 -> 4 -> 2 pixels; the other common CIFAR port
# (second stage at stride 1 too) costs 2.6x more per training step on this CPU, i.e. fewer epochs
# in the same hour, for the same architecture family.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
CACHE = Path(os.environ.get("CONVDEPLOY_CACHE", Path.home() / ".cache" / "convdeploy"))
WEIGHTS = CACHE / "mobilenetv2-cifar10.pt"


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv_bn(cin, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   _conv_bn(hidden, cout, 1, relu=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        cin = int(32 * width)
        blocks: list[nn.Module] = [_conv_bn(3, cin, 3, stride=1)]
        for t, c, n, s in SETTINGS:
            cout = int(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = int(1280 * max(1.0, width))
        blocks.append(_conv_bn(cin, last, 1))
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(self.dropout(x))


def mobilenetv2(num_classes: int = 10) -> MobileNetV2:
    return MobileNetV2(num_classes)


EPOCHS = 60
WEIGHT_DECAY = 4e-5


def train(train_dir: Path, *, epochs: int = EPOCHS, batch_size: int = 96, lr: float = 0.1,
          seed: int = 0, eval_dir: Path | None = None, log=print,
          device: str = "cpu") -> tuple[MobileNetV2, dict]:
    """Train from scratch: SGD + Nesterov, one-cycle schedule (cosine annealing), label
    smoothing 0.1, crop+flip augmentation, and the paper's regularisation: weight decay 4e-5 on
    the dense and pointwise weights, none on depthwise weights, BN and biases (the reference
    TF-slim implementation's ``regularize_depthwise=False``). Returns the model and a summary
    (epochs, minutes, test accuracy when ``eval_dir`` is given). ``device="cuda"`` trains on a
    GPU with the same shuffles and crops (drawn on the CPU); the weights differ from a CPU run's
    by floating-point summation order, so say which device trained a checkpoint."""
    from .augment import random_crop_flip
    from .datasets import load_images
    from .training import fit, test_accuracy
    from .zoo import CIFAR_PREPROCESS

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = load_images(Path(train_dir), CIFAR_PREPROCESS)
    x, y = torch.from_numpy(data.normalized(CIFAR_PREPROCESS)), torch.from_numpy(data.labels)
    model = MobileNetV2().to(device)
    decayed, free = [], []
    for m in model.modules():
        depthwise = isinstance(m, nn.Conv2d) and m.groups > 1
        for p in m.parameters(recurse=False):
            (decayed if p.ndim > 1 and not depthwise else free).append(p)
    opt = torch.optim.SGD([{"params": decayed, "weight_decay": WEIGHT_DECAY},
                           {"params": free, "weight_decay": 0.0}],
                          lr=lr, momentum=0.9, nesterov=True)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, pct_start=0.15,
                                                total_steps=epochs * steps_per_epoch)
    minutes = fit(model, x, y, opt, sched, gen, epochs=epochs, batch_size=batch_size,
                  augment=random_crop_flip, label_smoothing=0.1, log=log, device=device)
    model = model.cpu()
    summary = {"epochs": epochs, "train_images": len(x), "batch_size": batch_size, "seed": seed,
               "weight_decay": WEIGHT_DECAY, "regularize_depthwise": False,
               "train_minutes": minutes, "threads": torch.get_num_threads(),
               "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
               "torch": torch.__version__}
    if eval_dir is not None:
        summary["test_accuracy"] = test_accuracy(model, eval_dir, CIFAR_PREPROCESS)
        log(f"test accuracy {summary['test_accuracy']:.4f}")
    return model.eval(), summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train MobileNetV2 for CIFAR-10 (CPU by default).")
    parser.add_argument("--train", type=Path, required=True, help="ImageFolder training split")
    parser.add_argument("--eval", type=Path, help="ImageFolder test split")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    model, summary = train(args.train, epochs=args.epochs, eval_dir=args.eval,
                           device=args.device)
    print(summary)
    save_weights(model, summary, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
