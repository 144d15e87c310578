import collections
import sys

import pytest
import torch

from convdeploy.errors import ConvdeployError
from convdeploy.models.loading import load_checkpoint, load_model
from tests.conftest import seeded_tiny_net


class NotAStateDict:
    """Pickling this needs Python code: weights_only=True must refuse it."""

    def __init__(self):
        self.payload = torch.zeros(1)


def test_state_dict_wrapper_and_module_prefix(tmp_path):
    net = seeded_tiny_net()
    wrapped = {"best_prec1": 90.0,
               "state_dict": collections.OrderedDict(
                   (f"module.{k}", v) for k, v in net.state_dict().items())}
    torch.save(wrapped, tmp_path / "ckpt.th")
    state = load_checkpoint(tmp_path / "ckpt.th")
    assert set(state) == set(net.state_dict())


def test_checkpoint_needing_pickle_code_is_refused_not_run(tmp_path):
    torch.save({"state_dict": NotAStateDict()}, tmp_path / "evil.pt")
    with pytest.raises(ConvdeployError, match="never runs"):
        load_checkpoint(tmp_path / "evil.pt")


def test_missing_and_garbage_checkpoints(tmp_path):
    with pytest.raises(ConvdeployError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConvdeployError):
        load_checkpoint(tmp_path / "junk.pt")


def test_import_path_model_with_weights(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        "from tests.conftest import TinyNet\ndef build():\n    return TinyNet()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    net = seeded_tiny_net(seed=3)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded = load_model("user_models:build", tmp_path / "w.pt")
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded.model(x), net(x))
    sys.modules.pop("user_models", None)


def test_weights_that_do_not_fit_are_named(tmp_path, monkeypatch):
    (tmp_path / "user_models2.py").write_text(
        "from tests.conftest import TinyNet\ndef build():\n    return TinyNet(num_classes=7)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(seeded_tiny_net().state_dict(), tmp_path / "w.pt")
    with pytest.raises(ConvdeployError, match="do not fit"):
        load_model("user_models2:build", tmp_path / "w.pt")


def test_pt2_program_loads_with_its_input_size(tmp_path):
    net = seeded_tiny_net()
    program = torch.export.export(net, (torch.randn(1, 3, 16, 16),))
    torch.export.save(program, tmp_path / "tiny.pt2")
    loaded = load_model(str(tmp_path / "tiny.pt2"))
    assert loaded.preprocess_hint.input_shape == (3, 16, 16)


def test_unknown_model_and_zoo_without_weights():
    with pytest.raises(ConvdeployError, match="unknown model"):
        load_model("not-a-model")
    with pytest.raises(ConvdeployError, match="needs --weights"):
        load_model("resnet20-cifar10")


def test_embedded_demo_model_is_accurate():
    """The packaged weights are what the recipe trained: 98.7% on the digits test split."""
    from convdeploy.models.digits import digits_datasets, evaluate

    loaded = load_model("digits-convnet")
    assert evaluate(loaded.model, digits_datasets()[1]) > 0.97
