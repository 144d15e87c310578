"""The embedded demo: a small ConvNet trained by this project on scikit-learn's handwritten digits.

The data is real and ships inside scikit-learn (1,797 8x8 images, 16 grey levels, no download);
images are scaled to uint8 and upsampled to 32x32 so the network looks like a real image model.
The recipe below produced the packaged ``weights/digits_convnet.pt``:
``python -m convdeploy.models.digits`` retrains it (about 30 s on 2 cores).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .datasets import ImageSet
from .spec import Preprocess
from .training import train_epoch

WEIGHTS = Path(__file__).parent / "weights" / "digits_convnet.pt"
PREPROCESS = Preprocess(size=(32, 32), mean=(0.2,), std=(0.3,))
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsNet(nn.Module):
    """Four conv-BN-ReLU stages (32 -> 4 pixels), global average pool, linear classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_bn(1, 16, 1), _conv_bn(16, 32, 2),
                                      _conv_bn(32, 32, 2), _conv_bn(32, 64, 2))
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


def digits_datasets() -> tuple[ImageSet, ImageSet]:
    """(train, test) ImageSets: a stratified 70/30 split with a fixed seed."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BILINEAR))
                       for im in small])[..., None]
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=TEST_FRACTION,
                                           stratify=digits.target, random_state=SPLIT_SEED)
    classes = [str(i) for i in range(10)]
    make = lambda idx, split: ImageSet(  # noqa: E731
        images[idx], digits.target[idx].astype(np.int64), f"sklearn-digits/{split}", classes,
        details={"upsampled": "8x8 -> 32x32 bilinear"})
    return make(idx_train, "train"), make(idx_test, "test")


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (the only augmentation digits need)."""
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(epochs: int = 30, *, seed: int = 0, batch_size: int = 64,
          train_set: ImageSet | None = None, log: bool = True) -> tuple[DigitsNet, float]:
    """Train DigitsNet from scratch; returns the model and its test accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_set, test_set = (train_set, digits_datasets()[1]) if train_set else digits_datasets()
    x = torch.from_numpy(train_set.normalized(PREPROCESS))
    y = torch.from_numpy(train_set.labels)
    model = DigitsNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for epoch in range(epochs):
        loss = train_epoch(model, x, y, opt, sched, gen, batch_size=batch_size,
                           augment=lambda xb, g: _shift(xb, 2, g))
        if log:
            print(f"epoch {epoch + 1}/{epochs} loss {loss:.4f}")
    return model.eval(), evaluate(model, test_set)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet) -> float:
    logits = model.eval()(torch.from_numpy(data.normalized(PREPROCESS)))
    return float((logits.argmax(1).numpy() == data.labels).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Retrain the embedded demo model.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args(argv)
    model, acc = train(args.epochs)
    print(f"test accuracy {acc:.4f}")
    from convdeploy.files import write_bytes_atomic
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(args.out, buf.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
