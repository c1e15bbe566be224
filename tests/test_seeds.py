"""Seeds from one place: offset 0 reproduces today's draws, any other offset draws anew, data stays fixed."""

import numpy as np
import pytest
import torch

import traindeep
from traindeep import batched, data, nets, train


def test_offset_zero_is_the_plain_seed(monkeypatch):
    monkeypatch.delenv("TRAINDEEP_SEED_OFFSET", raising=False)
    assert traindeep.shifted(7) == 7
    assert traindeep.rng(3).integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)
    assert torch.equal(torch.randn(4, generator=traindeep.generator(5)),
                       torch.randn(4, generator=torch.Generator().manual_seed(5)))
    traindeep.seed_everything(2)
    a = torch.randn(3)
    torch.manual_seed(2)
    assert torch.equal(a, torch.randn(3))
    assert traindeep.seeds(3) == (0, 1, 2) and traindeep.seeds(2, start=5) == (5, 6)


def test_an_offset_changes_every_draw_but_not_the_data(monkeypatch):
    splits0 = data.digits()
    traindeep.seed_everything(0)
    w0 = nets.mlp(64, 10, depth=2, width=16)[0].weight.clone()
    monkeypatch.setenv("TRAINDEEP_SEED_OFFSET", "1")
    splits1 = data.digits()
    assert torch.equal(splits0.X_train, splits1.X_train) and torch.equal(splits0.y_val, splits1.y_val)
    traindeep.seed_everything(0)
    w1 = nets.mlp(64, 10, depth=2, width=16)[0].weight.clone()
    assert not torch.equal(w0, w1)
    assert traindeep.shifted(0) != 0 and traindeep.shifted(0) not in range(1000)
    assert traindeep.rng(0).integers(1 << 30) != np.random.default_rng(0).integers(1 << 30)


def test_the_training_loops_follow_the_offset(monkeypatch):
    splits = data.digits()
    small = dict(depth=1, width=8, epochs=1, batch_size=256)

    def both():
        traindeep.seed_everything(0)
        model = nets.mlp(64, 10, depth=1, width=8)
        fitted = train.fit(model, splits, epochs=1, lr=0.1, batch_size=256, seed=0, progress=False)
        histories, _ = batched.fit_many([{"lr": 0.1, "seed": 0}], splits, **small)
        return fitted.train_loss[-1], histories[0].train_loss[-1]

    monkeypatch.delenv("TRAINDEEP_SEED_OFFSET", raising=False)
    plain = both()
    monkeypatch.setenv("TRAINDEEP_SEED_OFFSET", "2")
    moved = both()
    assert plain[0] == pytest.approx(plain[1], rel=1e-4) and moved[0] == pytest.approx(moved[1], rel=1e-4)
    assert abs(plain[0] - moved[0]) > 1e-6


def test_bad_offsets_and_seeds_are_named(monkeypatch):
    monkeypatch.setenv("TRAINDEEP_SEED_OFFSET", "two")
    with pytest.raises(ValueError, match="TRAINDEEP_SEED_OFFSET must be a non-negative integer"):
        traindeep.shifted(0)
    monkeypatch.delenv("TRAINDEEP_SEED_OFFSET")
    with pytest.raises(ValueError, match="non-negative int"):
        traindeep.shifted(-1)
    with pytest.raises(ValueError, match="positive int"):
        traindeep.seeds(0)
