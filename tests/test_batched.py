"""Batched training must be `train.fit`, K times over, only faster."""

import math

import pytest
import torch

from traindeep import batched, data, nets, seed_everything, sweep, train

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


def stacked_and_alone(runs, optimizer, epochs, **shape):
    """fit_many's histories and stack, and each run trained alone by train.fit (its model), all in float64;
    asserts that every run's history is fit's."""
    splits = as_double(DIGITS)
    histories, stack = batched.fit_many(runs, splits, epochs=epochs, batch_size=100, optimizer=optimizer,
                                        record_steps=True, dtype=torch.float64, **shape)
    models = []
    for k, run in enumerate(runs):
        expected, model = alone(run, splits, optimizer, epochs, 100, **shape)
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "step_loss"):
            assert getattr(histories[k], metric) == pytest.approx(getattr(expected, metric), rel=1e-9, abs=1e-12), \
                (optimizer, shape, k, metric)
        models.append(model)
    return stack, models


@pytest.mark.parametrize("optimizer,runs", [
    ("sgd", RUNS),
    ("nesterov", [{"lr": 0.05, "seed": 3}, {"lr": 0.02, "momentum": 0.8, "weight_decay": 1e-2, "seed": 4}]),
    ("rmsprop", [{"lr": 1e-3, "seed": 9}, {"lr": 3e-4, "momentum": 0.5, "weight_decay": 1e-2, "seed": 10}]),
    ("adam", [{"lr": 1e-3, "seed": 5}, {"lr": 3e-3, "weight_decay": 1e-2, "seed": 6}]),
    ("adamw", [{"lr": 1e-3, "weight_decay": 0.1, "seed": 7}, {"lr": 1e-2, "seed": 8, "scale": 0.5}]),
])
def test_each_stacked_run_is_exactly_fit(optimizer, runs):
    stack, models = stacked_and_alone(runs, optimizer, 3, depth=2, width=24, activation="tanh", init="he_normal")
    for k, model in enumerate(models):
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for W, linear in zip(stack.weights, linears):
            torch.testing.assert_close(W[k].detach(), linear.weight.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm,optimizer", [("batch", "sgd"), ("batch", "adamw"), ("layer", "sgd")])
def test_stacked_runs_with_a_norm_are_exactly_fit(norm, optimizer):
    runs = RUNS if optimizer == "sgd" else [{"lr": 3e-3, "weight_decay": 0.1, "seed": 7}, {"lr": 1e-2, "seed": 8}]
    stack, models = stacked_and_alone(runs, optimizer, 2, depth=3, width=16, activation="relu", init="he_normal",
                                      norm=norm)
    for k, model in enumerate(models):
        norms = [m for m in model if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm))]
        assert len(norms) == len(stack.gains) == 3
        for i, layer in enumerate(norms):
            torch.testing.assert_close(stack.gains[i][k, 0].detach(), layer.weight.detach(), rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(stack.shifts[i][k, 0].detach(), layer.bias.detach(), rtol=1e-9, atol=1e-12)
            if norm == "batch":  # the evaluation statistics too, not only what training mode computes
                torch.testing.assert_close(stack.running_mean[i][k, 0], layer.running_mean, rtol=1e-7, atol=1e-9)
                torch.testing.assert_close(stack.running_var[i][k, 0], layer.running_var, rtol=1e-7, atol=1e-9)


def test_batch_norm_refuses_a_batch_of_one_and_an_unknown_norm():
    one_left = type(DIGITS)(**{**vars(DIGITS), "X_train": DIGITS.X_train[:65], "y_train": DIGITS.y_train[:65]})
    with pytest.raises(ValueError, match="at least 2 examples per batch"):
        batched.fit_many([{"lr": 0.1}], one_left, norm="batch", batch_size=64, epochs=1)
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        batched.fit_many([{"lr": 0.1}], DIGITS, norm="group")


def test_sweep_mlp_stacks_normalized_networks():
    records = sweep.sweep_mlp({"lr": [0.03, 0.3]}, DIGITS, seeds=(0, 1), fixed={"norm": "batch", "depth": 4,
                                                                                 "width": 32, "epochs": 2},
                              progress=False)
    again = sweep.sweep_mlp({"lr": [0.03, 0.3]}, DIGITS, seeds=(0, 1), fixed={"norm": "batch", "depth": 4,
                                                                               "width": 32, "epochs": 2},
                            progress=False, batched=False)
    assert [r["val_acc"] for r in records] == pytest.approx([r["val_acc"] for r in again], abs=0.01)
    assert all(r["norm"] == "batch" and r["val_acc"] > (0.8 if r["lr"] == 0.3 else 0.2) for r in records)


def test_a_diverging_run_stops_alone():
    runs = [{"lr": 0.1, "seed": 0}, {"lr": 500.0, "momentum": 0.9, "seed": 0}, {"lr": 0.1, "seed": 1}]
    histories, stack = batched.fit_many(runs, DIGITS, epochs=4, width=32)
    assert histories[1].diverged and len(histories[1].val_acc) < 4
    healthy, _ = batched.fit_many([runs[0], runs[2]], DIGITS, epochs=4, width=32)
    for h, same in zip((histories[0], histories[2]), healthy):
        assert not h.diverged and h.val_acc == pytest.approx(same.val_acc, abs=1e-6) and h.val_acc[-1] > 0.8
    loss, acc = stack.evaluate(DIGITS.X_test, DIGITS.y_test)
    assert acc[0] > 0.8 and acc[2] > 0.8 and acc.shape == (3,)


def warmup_cosine(total, warmup):
    return lambda t: (t + 1) / warmup if t < warmup else 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.mark.parametrize("optimizer,options,make", [
    ("sgd", {}, lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)),
    ("rmsprop", {"alpha": 0.9}, lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, alpha=0.9)),
    ("adam", {"betas": (0.8, 0.99)}, lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.8, 0.99))),
    ("adamw", {"betas": (0.5, 0.999)}, lambda ps, lr: torch.optim.AdamW(ps, lr=lr, betas=(0.5, 0.999),
                                                                       weight_decay=0.1)),
])
def test_a_schedule_and_betas_follow_torchs_lambda_lr(optimizer, options, make):
    splits = as_double(DIGITS)
    epochs, batch_size = 2, 200
    total = epochs * math.ceil(len(splits.X_train) / batch_size)
    schedule = warmup_cosine(total, warmup=3)
    run = {"lr": 3e-3 if optimizer != "sgd" else 0.1, "seed": 2}
    if optimizer == "sgd":
        run["momentum"] = 0.9
    if optimizer == "adamw":
        run["weight_decay"] = 0.1
    histories, stack = batched.fit_many([run], splits, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                                        record_steps=True, dtype=torch.float64, width=16, schedule=schedule,
                                        **options)
    seed_everything(2)
    model = nets.mlp(splits.X_train.shape[1], 10, depth=2, width=16).double()
    expected = train.fit(model, splits, epochs=epochs, optimizer=make(model.parameters(), run["lr"]),
                         batch_size=batch_size, scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
                         record_steps=True, progress=False, seed=2)
    assert histories[0].step_loss == pytest.approx(expected.step_loss, rel=1e-9, abs=1e-12)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    torch.testing.assert_close(stack.weights[-1][0].detach(), linears[-1].weight.detach(), rtol=1e-9, atol=1e-12)
    # The schedule mattered: without it the same run ends elsewhere.
    plain, _ = batched.fit_many([run], splits, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                                record_steps=True, dtype=torch.float64, width=16, **options)
    assert abs(plain[0].step_loss[-1] - histories[0].step_loss[-1]) > 1e-6


@pytest.mark.parametrize("runs,kwargs,message", [
    ([{"lr": 0.1, "width": 8}], {}, "unknown per-run setting(s) ['width']"),
    ([{"momentum": 0.9}], {}, "positive learning rate 'lr'"),
    ([{"lr": 0.1}], {"optimizer": "adagrad"}, "batched training supports sgd, nesterov, rmsprop, adam, adamw"),
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


def sequential_records(grid, splits, seeds, fixed):
    """The same sweep, one `train.fit` at a time (the reference the batched path must match)."""
    def run(lr, seed, momentum=0.0, weight_decay=0.0, scale=1.0, width=64, depth=2, epochs=10, batch_size=64,
            optimizer="sgd", activation="relu", init="he_normal"):
        seed_everything(seed)
        model = nets.mlp(splits.X_train.shape[1], 10, depth=depth, width=width, activation=activation, init=init,
                         scale=scale).double()
        history = train.fit(model, splits, epochs=epochs, lr=lr, optimizer=optimizer, momentum=momentum,
                            weight_decay=weight_decay, batch_size=batch_size, progress=False, seed=seed)
        _, test_acc = train.evaluate(model, splits.X_test, splits.y_test)
        return {"val_acc": history.val_acc[-1], "test_acc": test_acc, "train_loss": history.train_loss[-1]}
    return sweep.sweep(run, grid, seeds=seeds, fixed=fixed, progress=False)


def test_a_declared_sweep_matches_the_sequential_one_record_by_record():
    splits = as_double(DIGITS)
    grid = {"lr": [0.03, 0.3], "momentum": [0.0, 0.9], "width": [16, 32]}  # 8 settings, two shapes
    fixed = {"epochs": 3, "batch_size": 128}
    ours = sweep.sweep_mlp(grid, splits, seeds=(0, 1), fixed=fixed, progress=False, dtype=torch.float64)
    reference = sequential_records(grid, splits, (0, 1), fixed)
    assert len(ours) == len(reference) == 16
    for a, b in zip(ours, reference):
        assert {k: a[k] for k in (*grid, "seed")} == {k: b[k] for k in (*grid, "seed")}
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-4)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    best = sweep.best_per(ours, "width")  # the summaries work on these records unchanged
    assert {row["width"] for row in best} == {16, 32} and all(row["val_acc_mean"] > 0.8 for row in best)
    alone = sweep.sweep_mlp(grid, splits, seeds=(0, 1), fixed=fixed, progress=False, dtype=torch.float64,
                            batched=False)
    for a, b in zip(alone, reference):
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)


def test_what_cannot_be_batched_runs_alone_and_says_so(capsys):
    records = sweep.sweep_mlp({"lr": [0.1], "dropout": [0.0, 0.2]}, DIGITS, seeds=(0,), fixed={"epochs": 2},
                              progress=False)
    assert "2 of 2 runs train one at a time (dropout cannot be batched)" in capsys.readouterr().out
    assert [r["dropout"] for r in records] == [0.0, 0.2] and all(r["val_acc"] > 0.5 for r in records)
    with pytest.raises(ValueError, match="does not know \\['colour'\\]"):
        sweep.sweep_mlp({"lr": [0.1], "colour": ["red"]}, DIGITS)
    with pytest.raises(ValueError, match="needs a learning rate 'lr'"):
        sweep.sweep_mlp({"width": [8]}, DIGITS)


def test_the_stack_trains_where_traindeep_device_says(monkeypatch):
    """No GPU here (nor in CI): a CPU-only mock of traindeep.device() stands in for one. The stack must
    ask it, put every tensor there, and hand back plain CPU numbers."""
    asked = []

    def fake_device():
        asked.append(True)
        return torch.device("cpu")

    monkeypatch.setattr(batched, "default_device", fake_device)
    histories, stack = batched.fit_many([{"lr": 0.1, "seed": 0}, {"lr": 0.3, "seed": 1}], DIGITS, epochs=2, width=16)
    assert asked == [True]
    assert {p.device for p in stack.parameters} == {torch.device("cpu")}
    loss, acc = stack.evaluate(DIGITS.X_test, DIGITS.y_test)
    assert loss.device.type == acc.device.type == "cpu" and all(isinstance(v, float) for v in histories[0].val_acc)
    explicit, _ = batched.fit_many([{"lr": 0.1, "seed": 0}], DIGITS, epochs=2, width=16, device="cpu")
    assert asked == [True] and explicit[0].val_acc == histories[0].val_acc  # an explicit device is not asked for


def test_train_stack_takes_any_update_rule_and_calls_back_on_schedule():
    # An update rule written out (plain SGD, one rate per network) is fit_many's SGD to the last bit, since
    # fit_many runs on the same loop; `on_every` sees steps every-1, 2*every-1, ...; `after_epoch` can stop.
    runs = [{"lr": 0.05, "seed": 0}, {"lr": 0.2, "seed": 1}]
    splits = as_double(DIGITS)
    expected, _ = batched.fit_many(runs, splits, epochs=2, batch_size=100, width=16, dtype=torch.float64)
    stack = batched.build(runs, 64, 10, 2, 16, "relu", "he_normal", dtype=torch.float64)
    rates = torch.tensor([0.05, 0.2], dtype=torch.float64)

    @torch.no_grad()
    def sgd(t):
        for p in stack.parameters:
            p.sub_(rates.view(-1, *[1] * (p.dim() - 1)) * p.grad)

    seen, epochs_seen = [], []
    losses = batched.train_stack(stack, splits, [0, 1], sgd, epochs=2, batch_size=100, every=5, on_every=seen.append,
                                 after_epoch=lambda epoch, _: epochs_seen.append(epoch.shape) or False)
    steps = math.ceil(len(splits.X_train) / 100)
    assert losses.shape == (2, 2 * steps) and epochs_seen == [(2, steps)] * 2
    assert seen == list(range(4, 2 * steps, 5))
    val_acc = stack.evaluate(splits.X_val, splits.y_val)[1]
    assert val_acc.tolist() == [h.val_acc[-1] for h in expected]
    assert losses[:, -1].tolist() != losses[:, 0].tolist()  # it trained
    stopped = batched.train_stack(batched.build(runs, 64, 10, 2, 16, "relu", "he_normal"), DIGITS, [0, 1],
                                  lambda t: None, epochs=5, batch_size=100, after_epoch=lambda *_: True)
    assert stopped.shape == (2, steps)  # stopped after the first epoch


def test_train_stack_trains_each_network_on_its_own_data_as_fit_does():
    # Two networks, each on its own subset of the digits (chapter 6's fine-tuning), full-batch and in
    # minibatches: each equals train.fit on its subset alone, in float64, with the same seed.
    splits = as_double(DIGITS)
    subsets = [torch.arange(0, 300, 3), torch.arange(1, 300, 3)]
    own = type(splits)(**{**vars(splits), "X_train": torch.stack([splits.X_train[i] for i in subsets]),
                          "y_train": torch.stack([splits.y_train[i] for i in subsets])})
    runs = [{"lr": 0.1, "seed": 0}, {"lr": 0.3, "seed": 1}]
    rates = torch.tensor([0.1, 0.3], dtype=torch.float64)

    def sgd(stack):
        @torch.no_grad()
        def update(t):
            for p in stack.parameters:
                p.sub_(rates.view(-1, *[1] * (p.dim() - 1)) * p.grad)
        return update

    for batch_size in (100, 32):
        stack = batched.build(runs, 64, 10, 1, 16, "relu", "he_normal", dtype=torch.float64)
        batched.train_stack(stack, own, [0, 1], sgd(stack), epochs=3, batch_size=batch_size)
        for k, (run, subset) in enumerate(zip(runs, subsets)):
            alone_splits = type(splits)(**{**vars(splits), "X_train": splits.X_train[subset],
                                           "y_train": splits.y_train[subset]})
            _, model = alone(run, alone_splits, "sgd", 3, batch_size, depth=1, width=16, activation="relu",
                             init="he_normal")
            linears = [m for m in model if isinstance(m, torch.nn.Linear)]
            for W, linear in zip(stack.weights, linears):
                torch.testing.assert_close(W[k].detach(), linear.weight.detach(), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match=r"X_train \(K, n, features\) and y_train \(K, n\) with K = 3 seeds"):
        batched.train_stack(stack, own, [0, 1, 2], sgd(stack), epochs=1)
