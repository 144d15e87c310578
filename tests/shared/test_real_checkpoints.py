"""Real-data checks: the zoo loads the published checkpoints and reproduces their accuracy on
the shared CIFAR-10 test split (81.0% / 83.2% measured on these JPEGs). Skipped without
../shared; the full quantized comparison lives in bench/."""
import pytest
import torch

from convdeploy.models.datasets import load_images
from convdeploy.models.loading import load_model
from convdeploy.models.zoo import CIFAR_PREPROCESS

pytestmark = pytest.mark.shared


@pytest.mark.parametrize("name,expected", [("resnet20-cifar10", 0.810),
                                           ("resnet56-cifar10", 0.832)])
def test_published_checkpoint_accuracy(shared_dir, name, expected):
    loaded = load_model(name, shared_dir / "models" / f"{name}.th")
    test = load_images(shared_dir / "data" / "cifar10" / "test", CIFAR_PREPROCESS,
                       progress=False)
    assert len(test) == 10_000
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 500):
            x = torch.from_numpy(test.normalized(CIFAR_PREPROCESS, start, start + 500))
            correct += int((loaded.model(x).argmax(1).numpy()
                            == test.labels[start:start + 500]).sum())
    assert abs(correct / len(test) - expected) < 0.0006, correct / len(test)
