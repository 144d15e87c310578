"""The reference target is the simulation itself: 0 LSB by construction, float exact."""
import numpy as np
import torch

from convdeploy.exporters.artifact import Artifact, ArtifactFormat
from convdeploy.targets import registry
from convdeploy.targets.base import RuntimeOptions
from tests.artifacts import tiny_quantized


def test_reference_runs_float_and_simulation(tmp_path):
    model, qm, batches = tiny_quantized()
    target = registry.get("reference")
    x = batches[0].numpy()
    for precision, expected in (("float", qm.float), ("w8a8", qm.simulate)):
        art = Artifact(name="t", format=ArtifactFormat.TORCH, precision=precision, module=qm)
        assert target.check(art) == []
        y = target.compile(art, tmp_path, options=RuntimeOptions(1))({"input": x})["output"]
        np.testing.assert_array_equal(y, expected(torch.from_numpy(x)).numpy())


def test_reference_refuses_onnx_artifacts(tmp_path):
    target = registry.get("reference")
    art = Artifact(name="t", format=ArtifactFormat.ONNX, precision="float", path=tmp_path / "m")
    assert any("torch" in r for r in target.check(art))


def test_registry_lists_builtins_and_rejects_unknown():
    import pytest

    from convdeploy.errors import ConvdeployError

    assert {"reference", "cpu-ort", "cpu-openvino"} <= set(registry.names())
    with pytest.raises(ConvdeployError, match="unknown target"):
        registry.get("tpu-magic")
