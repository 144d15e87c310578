"""QAT (improves a poor 4-bit PTQ model; resumes exactly) and per-layer sensitivity."""
import pytest
import torch

from convdeploy.errors import ConvdeployError
from convdeploy.quant import capture
from convdeploy.quant.config import QATConfig
from convdeploy.quant.ptq import quantize
from convdeploy.quant.qat import finetune
from convdeploy.quant.scheme import W4A4, W8A8, LayerOverride
from convdeploy.quant.sensitivity import channel_range_spread, layer_sensitivity


@pytest.fixture
def task(tiny_net):
    """Labels from the float model itself: float accuracy is 100% by construction."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(384, 3, 16, 16, generator=gen)
    with torch.no_grad():
        y = tiny_net(x).argmax(1)
    return capture(tiny_net, x[:2]), x, y


def _loss(qm, x, y) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(qm.simulate(x), y))


def test_qat_lowers_the_loss_of_a_w4a4_model(task):
    gm, x, y = task
    qm = quantize(gm, W4A4, [x[:128]], progress=False)
    before = _loss(qm, x, y)
    history = finetune(qm, x, y, QATConfig(epochs=4, lr=0.02), progress=False)
    assert _loss(qm, x, y) < 0.7 * before
    assert history[-1]["loss"] < history[0]["loss"]
    assert qm.label == "w4a4+qat" and not any(p.requires_grad for p in qm.graph.parameters())
    # The trained scales are the exported numbers.
    learned = 0
    for key, q in qm.quantizers.items():
        if q.kind.value == "activation":
            assert qm.encodings[key].scale[0] == pytest.approx(float(q.scale), rel=1e-6)
            learned += 1
    assert learned > 3


def test_qat_resumes_to_the_same_result(task, tmp_path):
    gm, x, y = task
    cfg = QATConfig(epochs=2, lr=0.01, batch_size=64)
    straight = quantize(gm, W4A4, [x[:128]], progress=False)
    finetune(straight, x, y, cfg, progress=False)
    ckpt = tmp_path / "qat.pt"
    _one_epoch_checkpoint(gm, x, y, cfg, ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = quantize(gm, W4A4, [x[:128]], progress=False)
    finetune(resumed, x, y, cfg, checkpoint=ckpt, run_id="r", progress=False)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    for a, b in zip(straight.graph.state_dict().values(), resumed.graph.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def _one_epoch_checkpoint(gm, x, y, cfg, path):
    """Run epoch 1 of ``cfg`` and stop, as an interrupted run would (checkpoint after epoch 1)."""
    import convdeploy.quant.qat as qat

    qm = quantize(gm, W4A4, [x[:128]], progress=False)
    original = qat._save_checkpoint

    class Interrupt(Exception):
        pass

    def save_then_stop(p, state):
        original(p, state)
        raise Interrupt

    qat._save_checkpoint = save_then_stop
    try:
        with pytest.raises(Interrupt):
            finetune(qm, x, y, cfg, checkpoint=path, run_id="r", progress=False)
    finally:
        qat._save_checkpoint = original


def test_checkpoint_of_another_run_is_refused(task, tmp_path):
    gm, x, y = task
    ckpt = tmp_path / "qat.pt"
    qm = quantize(gm, W4A4, [x[:128]], progress=False)
    finetune(qm, x, y, QATConfig(epochs=1), checkpoint=ckpt, run_id="a", progress=False)
    with pytest.raises(ConvdeployError, match="belongs to another run"):
        finetune(qm, x, y, QATConfig(epochs=1), checkpoint=ckpt, run_id="b", progress=False)


def test_sensitivity_names_the_layer_with_fewer_bits(task):
    gm, x, y = task
    qm = quantize(gm, W8A8, [x[:128]], progress=False)
    rows = layer_sensitivity(qm, x, y.numpy())
    assert [r["layer"] for r in rows] == ["stem.0", "dw.0", "down.0", "fc"]
    assert all(r["sqnr_db"] > 15 for r in rows)
    assert all(r["channel_range_spread"] >= 1.0 for r in rows)
    # The same model with dw.0 at 4 bits (mixed precision): that layer becomes the worst.
    mixed = W8A8.with_(overrides=(LayerOverride.parse("dw.0=4"),))
    qm = quantize(gm, mixed, [x[:128]], progress=False)
    rows = layer_sensitivity(qm, x, y.numpy())
    worst = min(rows, key=lambda r: r["sqnr_db"])
    assert worst["layer"] == "dw.0" and worst["weight_bits"] == 4


def test_channel_range_spread_measures_what_per_tensor_weights_cost():
    w = torch.ones(4, 3, 3, 3)
    assert channel_range_spread(w) == pytest.approx(1.0)
    w[2] *= 50.0  # one outlier channel, as BN folding makes of a near-dead channel
    assert channel_range_spread(w) == pytest.approx(50.0)
    assert channel_range_spread(torch.zeros(2, 3)) == float("inf")


def test_diverging_fine_tuning_stops_with_the_fix(task):
    gm, x, y = task
    qm = quantize(gm, W4A4, [x[:128]], progress=False)
    with pytest.raises(ConvdeployError, match="diverged in epoch 1") as info:
        finetune(qm, x, y, QATConfig(epochs=1, lr=1e6), progress=False)
    assert "lower --lr" in info.value.fix
