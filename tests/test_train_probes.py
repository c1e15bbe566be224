import dataclasses
import math

import numpy as np
import pytest
import torch

from traindeep import data, nets, probes, seed_everything, train


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def test_seed_everything_makes_runs_repeat(digits):
    results = []
    for _ in range(2):
        seed_everything(3)
        net = nets.mlp(64, 10, depth=1, width=32)
        results.append(train.fit(net, digits, epochs=2, progress=False).val_loss)
    assert results[0] == results[1]
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_fit_learns_digits(digits):
    seed_everything(0)
    net = nets.mlp(64, 10, depth=2, width=64)
    history = train.fit(net, digits, epochs=5, lr=0.05, momentum=0.9, progress=False, seed=0,
                        record_steps=True)
    assert history.epochs == 5 and not history.diverged
    assert history.val_acc[-1] > 0.9
    assert history.train_loss[-1] < history.train_loss[0]
    assert len(history.step_loss) == 5 * math.ceil(len(digits.X_train) / 64)
    assert history.best("val_acc") == max(history.val_acc)


def test_a_float64_network_takes_the_float32_data_as_it_is(digits):
    as64 = dataclasses.replace(digits, **{k: getattr(digits, k).double() for k in ("X_train", "X_val", "X_test")})
    histories = []
    for splits in (digits, as64):
        seed_everything(1)
        net = nets.mlp(64, 10, depth=2, width=32).double()
        histories.append(train.fit(net, splits, epochs=2, lr=0.1, progress=False, seed=1, record_steps=True))
    assert digits.X_train.dtype == torch.float32  # the data set itself is left alone
    assert histories[0].step_loss == histories[1].step_loss and histories[0].val_acc == histories[1].val_acc
    assert train.evaluate(net, digits.X_val, digits.y_val) == train.evaluate(net, as64.X_val, as64.y_val)


def test_fit_stops_on_divergence(digits):
    seed_everything(0)
    net = nets.mlp(64, 10, depth=10, width=64, init="he_normal", scale=3.0)
    history = train.fit(net, digits, epochs=5, lr=1.0, progress=False)
    assert history.diverged and history.epochs < 5 and math.isnan(history.val_loss[-1])


def test_fit_rejects_unknown_optimizer(digits):
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'; expected one of sgd"):
        train.fit(nets.mlp(64, 10), digits, optimizer="sgdd")


def test_layer_stats_shows_vanishing_in_deep_sigmoid(digits):
    X, y = digits.X_train[:128], digits.y_train[:128]
    seed_everything(0)
    sig = probes.layer_stats(nets.mlp(64, 10, depth=15, width=64, activation="sigmoid",
                                      init="xavier_normal"), X, y)
    seed_everything(0)
    relu = probes.layer_stats(nets.mlp(64, 10, depth=15, width=64, activation="relu",
                                       init="he_normal"), X, y)
    assert sig.depth == relu.depth == 15
    assert sig.grad_norm[0] / sig.grad_norm[-1] < 1e-5
    assert 0.01 < relu.grad_norm[0] / relu.grad_norm[-1] < 100
    assert "| 15 |" in relu.table()


def test_layer_stats_counts_dead_and_saturated_units():
    net = nets.mlp(4, 2, depth=1, width=6, activation="relu")
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]))
    stats = probes.layer_stats(net, torch.randn(16, 4), torch.zeros(16, dtype=torch.long))
    assert stats.dead_frac[0] == pytest.approx(0.5)
    tanh = nets.mlp(4, 2, depth=1, width=4, activation="tanh")
    with torch.no_grad():
        tanh[0].weight.zero_()
        tanh[0].bias.copy_(torch.tensor([10.0, -10.0, 0.0, 0.1]))
    stats = probes.layer_stats(tanh, torch.randn(8, 4))
    assert stats.saturated_frac[0] == pytest.approx(0.5)


def test_layer_stats_needs_activations():
    with pytest.raises(ValueError, match="activation modules"):
        probes.layer_stats(torch.nn.Linear(3, 2), torch.randn(2, 3))


def test_history_best_ignores_nan():
    h = train.History(val_acc=[0.5, float("nan"), 0.7], val_loss=[1.0, float("nan"), 0.8])
    assert h.best("val_acc") == 0.7 and h.best("val_loss") == 0.8


def test_small_split_via_replace(digits):
    few = dataclasses.replace(digits, X_train=digits.X_train[:10], y_train=digits.y_train[:10])
    h = train.fit(nets.mlp(64, 10, depth=1, width=8), few, epochs=1, progress=False)
    assert np.isfinite(h.train_loss[0])


def test_spread_and_backward_signal_are_measured_where_they_fail(digits):
    X, y = digits.X_train[:128], digits.y_train[:128]
    seed_everything(0)
    net = nets.mlp(64, 10, depth=12, width=64, activation="sigmoid", init="xavier_normal")
    s = probes.layer_stats(net, X, y)
    # The top layers see (almost) one vector for every input although the plain std looks alive.
    assert s.act_spread[-1] < 1e-4 < 0.05 < s.act_std[-1]
    # The backward signal is the gradient w.r.t. each activation's output, checked against autograd.
    outputs = []
    h = X
    for layer in net:
        h = layer(h)
        if isinstance(layer, torch.nn.Sigmoid):
            h.retain_grad()
            outputs.append(h)
    torch.nn.functional.cross_entropy(h, y).backward()
    expected = np.array([o.grad.norm().item() for o in outputs])
    np.testing.assert_allclose(s.back_norm, expected, rtol=1e-5)
    assert s.back_norm[0] < 1e-4 * s.back_norm[-1]
    with pytest.raises(ValueError, match="at least 2 inputs"):
        probes.layer_stats(net, X[:1], y[:1])


def test_weight_change_is_relative_per_layer(digits):
    import copy

    seed_everything(0)
    net = nets.mlp(64, 10, depth=2, width=32)
    before = copy.deepcopy(net.state_dict())
    assert np.all(probes.weight_change(before, net) == 0)
    with torch.no_grad():
        net[2].weight.mul_(1.5)
    change = probes.weight_change(before, net)
    assert change.shape == (3,) and change[0] == 0 and abs(change[1] - 0.5) < 1e-6
