import random

import numpy as np
import pytest
import torch
from torch import nn

from mbnas.data import DataConfig, make_loader
from mbnas.errors import ConfigError, MbnasError
from mbnas.train import (
    EvalResult,
    OptimConfig,
    capture_rng_state,
    evaluate,
    infinite,
    load_checkpoint,
    make_criterion,
    make_optimizer,
    make_scheduler,
    recalibrate_bn,
    resolve_device,
    restore_rng_state,
    save_checkpoint,
    train_step,
)

TINY = DataConfig(synthetic_size=96, resolution=16, num_classes=3, batch_size=16)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def test_optimizer_exempts_bn_and_bias_from_weight_decay():
    model = tiny_model()
    optimizer = make_optimizer(model, OptimConfig(weight_decay=0.1))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {2, 4}
    assert len(plain["params"]) == 3  # BN weight, BN bias, Linear bias
    assert isinstance(make_optimizer(model, OptimConfig(optimizer="adamw")), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="optim.optimizer"):
        make_optimizer(model, OptimConfig(optimizer="lamb"))


def test_scheduler_warms_up_linearly_then_decays_to_zero():
    optimizer = make_optimizer(tiny_model(), OptimConfig(lr=1.0))
    scheduler = make_scheduler(optimizer, OptimConfig(lr=1.0, warmup_steps=4), total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_training_lowers_the_loss_and_evaluate_scores():
    model, cfg = tiny_model(), OptimConfig(lr=0.2, label_smoothing=0.0, grad_clip=5.0)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps=30)
    batches = infinite(make_loader(TINY, "train"))
    losses = [train_step(model, next(batches), optimizer, scheduler, make_criterion(cfg),
                         grad_clip=cfg.grad_clip) for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    result = evaluate(model, make_loader(TINY, "val"))
    assert isinstance(result, EvalResult) and result.samples == 10
    assert 0.0 <= result.accuracy <= 1.0 and result.loss > 0
    assert evaluate(model, make_loader(TINY, "train"), max_batches=1).samples == 16
    assert model.training  # evaluate restores the mode


def test_recalibrate_bn_replaces_running_stats_with_data_statistics():
    model = tiny_model()
    bn = model[1]
    bn.running_mean.fill_(100.0)
    bn.running_var.fill_(1e-3)
    model.eval()
    plain = DataConfig(**{**TINY.__dict__, "augment": False})
    loader = make_loader(plain, "train", batch_size=8, shuffle=False)
    assert recalibrate_bn(model, loader, num_images=32) == 32
    with torch.no_grad():
        features = model[0](torch.stack([loader.dataset[i][0] for i in range(32)]))
    # Cumulative averages of the batch statistics of exactly those 32 images.
    assert torch.allclose(bn.running_mean, features.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, features.var((0, 2, 3)), rtol=0.15)
    assert bn.momentum == 0.1 and not model.training


def test_checkpoint_roundtrip_and_atomic_write(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "run" / "last.pt",
                           {"model": model.state_dict(), "step": 7, "rng": capture_rng_state()})
    state = load_checkpoint(path)
    assert state["step"] == 7 and torch.equal(state["model"]["5.weight"], model[5].weight)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_corrupt_or_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(MbnasError, match="bad.pt.*corrupt.*delete"):
        load_checkpoint(bad)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(MbnasError, match="not an mbnas checkpoint"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    random.random(), np.random.rand(), torch.rand(5)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
