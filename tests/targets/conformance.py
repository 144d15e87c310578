"""One conformance template for every target: float within float tolerance of torch, quantized
within a stated number of output LSBs of the fake-quant simulation, and ``check`` that names what
it cannot run. A target file subclasses ``TargetConformance`` and states its tolerances."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from convdeploy.targets import registry
from convdeploy.targets.base import RuntimeOptions
from tests.artifacts import tiny_artifacts, tiny_quantized


class TargetConformance:
    target_name: str = ""
    float_atol: float = 1e-4
    max_lsb: float = 2.0  # quantized output vs simulation, in output LSBs
    min_exact_fraction: float = 0.9  # share of outputs equal to the simulation's

    def artifacts(self):
        """(float, quantized) artifacts in the format the target consumes."""
        return tiny_artifacts()

    @pytest.fixture
    def target(self):
        target = registry.get(self.target_name)
        reason = target.unavailable()
        if reason:
            pytest.skip(f"{self.target_name}: {reason}")
        return target

    def _run(self, target, artifact, tmp_path: Path, x: np.ndarray) -> np.ndarray:
        assert target.check(artifact) == []
        runnable = target.compile(artifact, tmp_path, options=RuntimeOptions(threads=2))
        return runnable({artifact.input_name: x})[artifact.output_name]

    def test_float_matches_torch(self, target, tmp_path):
        if not getattr(target, "runs_float", True):
            pytest.skip(f"{self.target_name} runs quantized models only")
        model, _, batches = tiny_quantized()
        flt, _ = self.artifacts()
        x = batches[2].numpy()
        y = self._run(target, flt, tmp_path, x)
        np.testing.assert_allclose(y, model(torch.from_numpy(x)).detach().numpy(),
                                   atol=self.float_atol, rtol=0)

    def test_quantized_within_lsbs_of_simulation(self, target, tmp_path):
        _, qm, batches = tiny_quantized()
        _, qdq = self.artifacts()
        x = batches[3].numpy()
        y = self._run(target, qdq, tmp_path, x)
        lsb = np.abs(y - qm.simulate(torch.from_numpy(x)).numpy()) / qdq.output_scale
        assert lsb.max() <= self.max_lsb + 1e-3
        assert (np.rint(lsb) == 0).mean() >= self.min_exact_fraction

    def test_any_batch_size(self, target, tmp_path):
        flt, qdq = self.artifacts()
        flt = flt if getattr(target, "runs_float", True) else qdq
        runnable = target.compile(flt, tmp_path, options=RuntimeOptions(threads=1))
        for n in (1, 3):
            x = np.zeros((n, *flt.input_shape), np.float32)
            assert runnable({flt.input_name: x})[flt.output_name].shape[0] == n

    def test_check_names_an_op_it_cannot_run(self, target, tmp_path):
        flt, _ = tiny_artifacts()
        model = onnx.load(str(flt.path))
        node = model.graph.node[-1]
        bogus = helper.make_node("NoSuchOp", list(node.output), ["bogus_out"], domain="acme.ops")
        model.graph.node.append(bogus)
        model.graph.output[0].name = "bogus_out"
        model.opset_import.append(helper.make_opsetid("acme.ops", 1))
        path = tmp_path / "bogus.onnx"
        onnx.save(model, str(path))
        reasons = target.check(replace(flt, path=path, output_name="bogus_out"))
        assert reasons and any("NoSuchOp" in r for r in reasons), reasons
