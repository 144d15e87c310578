"""A scheme a target cannot execute is refused by ``check`` with the reason, before any long
computation (loading data, calibration, AdaRound, QAT) starts."""
import pytest

from convdeploy.errors import ConvdeployError
from convdeploy.exporters.artifact import ArtifactFormat
from convdeploy.quant.scheme import W4A8, W8A8, W8A16, LayerOverride
from convdeploy.targets import registry
from convdeploy.targets.base import TargetBase


class Int8OnlyTarget(TargetBase):
    """A target like a DSP without 4-bit support (as a third-party plugin would declare it)."""

    name = "int8-only"
    description = "test target: 8-bit weights and activations only"
    formats = (ArtifactFormat.ONNX,)
    weight_bits = (8,)
    activation_bits = (8,)


def test_check_scheme_names_the_missing_width():
    target = Int8OnlyTarget()
    assert target.check_scheme(W8A8) == []
    assert target.check_scheme(W4A8) == ["int8-only has no 4-bit weights (it runs 8-bit)"]
    assert "16-bit activations" in target.check_scheme(W8A16)[0]
    mixed = W8A8.with_(overrides=(LayerOverride.parse("fc=4"),))
    assert "4-bit weights" in target.check_scheme(mixed)[0]


def test_builtin_cpu_targets_run_4bit():
    for name in ("reference", "cpu-ort", "cpu-openvino"):
        assert registry.get(name).check_scheme(W4A8) == []


def test_pipeline_refuses_before_any_work(tmp_path, monkeypatch):
    import convdeploy as cd
    import convdeploy.pipeline as pipeline

    monkeypatch.setitem(registry._registered, "int8-only", f"{__name__}:Int8OnlyTarget")

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the scheme was checked")

    monkeypatch.setattr(pipeline, "load_model", never)
    cfg = cd.DeployConfig(scheme=W4A8, targets=("int8-only",), out=tmp_path / "out",
                          progress=False)
    with pytest.raises(ConvdeployError, match="int8-only has no 4-bit weights"):
        cd.run(cfg)
    assert not (tmp_path / "out").exists()


def test_an_op_with_no_integer_kernel_is_named_before_calibration(tmp_path, monkeypatch):
    """int-reference asked for: an op it cannot lower (here Erf: no kernel, no float island)
    stops the run, with the op's name, before any calibration."""
    import numpy as np

    import convdeploy as cd
    import convdeploy.pipeline as pipeline

    (tmp_path / "erfnet.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class ErfNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3)\n\n"
        "    def forward(self, x):\n"
        "        return torch.erf(self.conv(x)).mean((2, 3))\n\n"
        "def build():\n"
        "    return ErfNet()\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def never(*args, **kwargs):
        raise AssertionError("calibration started before the op was checked")

    monkeypatch.setattr(pipeline, "_quantize", never)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8))
    cfg = cd.DeployConfig(model=cd.ModelSource("erfnet:build"), scheme=W8A8,
                          targets=("int-reference",), out=tmp_path / "out",
                          data=cd.DataConfig(calib=str(tmp_path / "d.npz"),
                                             eval=str(tmp_path / "d.npz")), progress=False)
    with pytest.raises(ConvdeployError, match="Erf"):
        cd.run(cfg)
    assert not (tmp_path / "out").exists()
