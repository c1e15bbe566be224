"""Batched training must be `train.fit`, K times over, only faster."""


import pytest
import torch

from traindeep import batched, data, nets, seed_everything, train

DIGITS = data.digits()


def as_double(splits):
    return type(splits)(**{k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v)
                           for k, v in vars(splits).items()})


def alone(run, splits, optimizer, epochs, batch_size, **shape):
    seed_everything(run.get("seed", 0))
    model = nets.mlp(splits.X_train.shape[1], 10, scale=run.get("scale", 1.0), **shape).double()
    history = train.fit(model, splits, epochs=epochs, lr=run["lr"], optimizer=optimizer,
                        momentum=run.get("momentum", 0.0), weight_decay=run.get("weight_decay", 0.0),
                        batch_size=batch_size, record_steps=True, progress=False, seed=run.get("seed", 0))
    return history, model


RUNS = [{"lr": 0.05, "seed": 0}, {"lr": 0.2, "momentum": 0.9, "seed": 1},
        {"lr": 0.01, "momentum": 0.5, "weight_decay": 1e-3, "seed": 2, "scale": 1.5}]


@pytest.mark.parametrize("optimizer,runs", [
    ("sgd", RUNS),
    ("nesterov", [{"lr": 0.05, "seed": 3}, {"lr": 0.02, "momentum": 0.8, "weight_decay": 1e-2, "seed": 4}]),
    ("adam", [{"lr": 1e-3, "seed": 5}, {"lr": 3e-3, "weight_decay": 1e-2, "seed": 6}]),
    ("adamw", [{"lr": 1e-3, "weight_decay": 0.1, "seed": 7}, {"lr": 1e-2, "seed": 8, "scale": 0.5}]),
])
def test_each_stacked_run_is_exactly_fit(optimizer, runs):
    splits = as_double(DIGITS)
    shape = dict(depth=2, width=24, activation="tanh", init="he_normal")
    histories, stack = batched.fit_many(runs, splits, epochs=3, batch_size=100, optimizer=optimizer,
                                        record_steps=True, dtype=torch.float64, **shape)
    for k, run in enumerate(runs):
        expected, model = alone(run, splits, optimizer, 3, 100, **shape)
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "step_loss"):
            assert getattr(histories[k], metric) == pytest.approx(getattr(expected, metric), rel=1e-9, abs=1e-12), \
                (optimizer, k, metric)
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for W, linear in zip(stack.weights, linears):
            torch.testing.assert_close(W[k].detach(), linear.weight.detach(), rtol=1e-9, atol=1e-12)


def test_a_diverging_run_stops_alone():
    runs = [{"lr": 0.1, "seed": 0}, {"lr": 500.0, "momentum": 0.9, "seed": 0}, {"lr": 0.1, "seed": 1}]
    histories, stack = batched.fit_many(runs, DIGITS, epochs=4, width=32)
    assert histories[1].diverged and len(histories[1].val_acc) < 4
    healthy, _ = batched.fit_many([runs[0], runs[2]], DIGITS, epochs=4, width=32)
    for h, same in zip((histories[0], histories[2]), healthy):
        assert not h.diverged and h.val_acc == pytest.approx(same.val_acc, abs=1e-6) and h.val_acc[-1] > 0.8
    loss, acc = stack.evaluate(DIGITS.X_test, DIGITS.y_test)
    assert acc[0] > 0.8 and acc[2] > 0.8 and acc.shape == (3,)


@pytest.mark.parametrize("runs,kwargs,message", [
    ([{"lr": 0.1, "width": 8}], {}, "unknown per-run setting(s) ['width']"),
    ([{"momentum": 0.9}], {}, "positive learning rate 'lr'"),
    ([{"lr": 0.1}], {"optimizer": "rmsprop"}, "batched training supports sgd, nesterov, adam, adamw"),
    ([], {}, "at least one run"),
    ([{"lr": 0.1}], {"activation": "swish"}, "activation"),
])
def test_bad_settings_are_named(runs, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        batched.fit_many(runs, DIGITS, epochs=1, **kwargs)


def test_a_grid_trains_faster_stacked_than_one_by_one():
    """24 runs (8 rates x 3 seeds) at batch size 8, where per-step overhead dominates: measured about
    6x on one thread; asserted at 2x so that a busy machine does not fail it."""
    from traindeep.course.bench import batched_speedup

    one_by_one, stacked, speedup = batched_speedup(epochs=1, batch_size=8, repeats=2)
    assert speedup > 2.0, (one_by_one, stacked)
