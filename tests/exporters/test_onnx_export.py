"""The ONNX exporter writes exactly the Encodings (read back from the file) and valid models."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from convdeploy.exporters.qdq import read_qdq_params
from convdeploy.quant.encodings import TensorKind
from tests.artifacts import tiny_artifacts, tiny_quantized


def test_qdq_file_carries_exactly_the_encodings():
    _, qm, _ = tiny_quantized()
    _, qdq = tiny_artifacts()
    model = onnx.load(str(qdq.path))
    found = read_qdq_params(model)
    assert set(found) == set(qm.encodings.tensors)
    for key, e in qm.encodings.tensors.items():
        scale = found[key]["scale"].reshape(-1)
        zp = found[key]["zero_point"].reshape(-1)
        np.testing.assert_array_equal(scale, np.asarray(e.scale, dtype=np.float32))
        np.testing.assert_array_equal(zp.astype(np.int64), np.asarray(e.zero_point))
        assert zp.dtype == e.numpy_dtype()


def test_weights_are_stored_as_integer_codes_of_the_encodings():
    _, qm, _ = tiny_quantized()
    _, qdq = tiny_artifacts()
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(qdq.path)).graph.initializer}
    for key, e in qm.encodings.tensors.items():
        if e.kind is TensorKind.ACTIVATION:
            continue
        codes = inits[f"{key}.quantized"]
        owner, _, attr = key.rpartition(".")
        w = getattr(qm.graph.get_submodule(owner), attr).detach().numpy()
        np.testing.assert_array_equal(codes, e.quantize(w))
        assert codes.dtype == (np.int8 if e.kind is TensorKind.WEIGHT else np.int32)
        assert key not in inits  # the float copy is gone


def test_models_pass_the_checker_and_shrink():
    flt, qdq = tiny_artifacts()
    for art in (flt, qdq):
        onnx.checker.check_model(onnx.load(str(art.path)), full_check=True)
        assert not any(n.domain == "convdeploy" for n in onnx.load(str(art.path)).graph.node)
    assert qdq.details["opset"] >= 13
    assert "QuantizeLinear" in qdq.details["op_types"]
    assert "QuantizeLinear" not in flt.details["op_types"]


def test_encodings_file_is_written_beside_the_model():
    from convdeploy.quant.encodings import Encodings

    _, qm, _ = tiny_quantized()
    _, qdq = tiny_artifacts()
    assert Encodings.load(qdq.encodings).tensors == qm.encodings.tensors


def test_batch_dimension_is_dynamic():
    flt, _ = tiny_artifacts()
    dim = onnx.load(str(flt.path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param and not dim.dim_value


@pytest.mark.parametrize("bad_key", ["stem.0.weight"])
def test_missing_encoding_is_an_error(bad_key):
    from convdeploy.exporters.qdq import write_qdq
    from convdeploy.exporters.onnx_export import _torch_export_onnx
    from convdeploy.quant.encodings import Encodings

    _, qm, batches = tiny_quantized()
    marker = _torch_export_onnx(qm, batches[0][:2])
    partial = Encodings({k: v for k, v in qm.encodings.tensors.items() if k != bad_key})
    with pytest.raises(KeyError, match=bad_key):
        write_qdq(marker, partial)


def test_constants_shared_by_the_exporter_keep_each_quantizers_codes(tmp_path):
    """torch's ONNX exporter shares equal constants (here: the zero biases of two freshly
    folded BatchNorms); two quantizers on one shared constant once wrote one initializer name
    twice (onnx.checker: 'initializer name is not unique'). Now each gets its own codes, or the
    identical tensor already written, and every runtime reads the file."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from torch import nn

    from convdeploy.exporters.lowering import lower_file
    from convdeploy.exporters.onnx_export import export_onnx
    from convdeploy.quant import W8A8, capture, quantize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.bias)
    x = torch.randn(8, 3, 8, 8)
    qm = quantize(capture(model, x[:2]), W8A8, [x], progress=False)
    art = export_onnx(qm, tmp_path / "m.onnx", example=x[:2], quantized=True)
    proto = onnx.load(str(art.path))
    onnx.checker.check_model(proto)
    names = [i.name for i in proto.graph.initializer]
    assert len(names) == len(set(names))
    y = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    sim = qm.simulate(x).detach().numpy()
    assert np.abs(y - sim).max() <= 2 * art.output_scale + 1e-6
    assert len(lower_file(art.path).ops) > 0
