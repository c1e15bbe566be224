import dataclasses
import math

import pytest
import torch
from torch import nn

from traindeep import data, nets, sanity


@pytest.fixture(scope="module")
def splits():
    X = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long() + 2 * (X[:, 1] > 0).long()  # 4 classes, learnable
    return data.make_splits("toy", X.numpy(), y.numpy(), seed=0)


def small_net(seed=0, **kw):
    torch.manual_seed(seed)
    return nets.mlp(8, 4, depth=2, width=32, **kw)


def test_result_prints_one_verdict_line():
    result = sanity.CheckResult("demo", False, 1.5, "too big")
    assert str(result) == "✗ demo: too big"
    assert str(dataclasses.replace(result, passed=True)).startswith("✓ demo")


def test_initial_loss_is_near_ln_classes_for_a_sane_net_and_flags_a_big_init(splits):
    good = sanity.initial_loss(small_net(scale=0.1), splits.X_train, splits.y_train, 4)
    assert good.passed and good.value == pytest.approx(math.log(4), abs=0.1)
    bad = sanity.initial_loss(small_net(scale=10.0), splits.X_train, splits.y_train, 4)
    assert not bad.passed and bad.value > math.log(4) + 1 and "too high" in bad.message


class Oracle(nn.Module):
    """A "model" that ignores its inputs and returns confident logits for the true labels."""

    def __init__(self, labels, num_classes):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.onehot = nn.functional.one_hot(labels, num_classes).float()

    def forward(self, x):
        return self.scale * self.onehot[: len(x)]


def test_initial_loss_flags_a_net_that_already_knows_the_labels(splits):
    result = sanity.initial_loss(Oracle(splits.y_train, 4), splits.X_train, splits.y_train, 4)
    assert not result.passed and result.value < 0.01 and "too low" in result.message


def test_checks_leave_the_model_untouched(splits):
    net = small_net(norm="batch").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sanity.run_all(net, splits)
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_overfit_one_batch_passes_for_a_healthy_net_and_fails_with_frozen_weights(splits):
    good = sanity.overfit_one_batch(small_net(), splits.X_train, splits.y_train)
    assert good.passed and good.value < 0.05 and len(good.details["curve"]) == 200
    frozen = small_net()
    for p in list(frozen.parameters())[:-2]:
        p.requires_grad_(False)  # only the output layer can learn: a linear model on 8 features
    torch.manual_seed(1)
    X = torch.randn(32, 8)
    y = torch.randint(0, 4, (32,))  # random labels: memorising needs the hidden layers
    bad = sanity.overfit_one_batch(frozen, X, y, steps=100)
    assert not bad.passed and bad.value > 0.05


def test_gradient_flow_names_a_frozen_layer(splits):
    net = small_net()
    assert sanity.gradient_flow(net, splits.X_train, splits.y_train).passed
    net[0].weight.requires_grad_(False)
    result = sanity.gradient_flow(net, splits.X_train, splits.y_train)
    assert not result.passed and result.value == 0.0
    assert result.details["silent"] == ["0.weight"] and "0.weight" in result.message


def test_split_leak_counts_copied_rows(splits):
    assert sanity.split_leak(splits).value == 0 and sanity.split_leak(splits).passed
    leaky = dataclasses.replace(splits, X_train=torch.cat([splits.X_train, splits.X_val[:7], splits.X_test[:3]]),
                                y_train=torch.cat([splits.y_train, splits.y_val[:7], splits.y_test[:3]]))
    result = sanity.split_leak(leaky)
    assert not result.passed and result.value == 10
    assert result.details == {"val_in_train": 7, "test_in_train": 3, "test_in_val": 0}


def test_label_in_features_finds_a_label_column(splits):
    clean = sanity.label_in_features(splits)
    assert clean.passed and clean.value < 0.9
    add = lambda X, y: torch.cat([X, y[:, None].float()], dim=1)
    leaky = dataclasses.replace(splits, X_train=add(splits.X_train, splits.y_train),
                                X_val=add(splits.X_val, splits.y_val), X_test=add(splits.X_test, splits.y_test))
    result = sanity.label_in_features(leaky)
    assert not result.passed and result.value == 1.0 and result.details["columns"] == [8]


def test_report_has_one_line_per_check(splits):
    results = sanity.run_all(small_net(scale=0.1), splits)
    assert [r.name for r in results] == ["initial loss", "overfit one batch", "gradient flow", "split leak",
                                         "label in features"]
    assert all(r.passed for r in results), sanity.report(results)
    assert sanity.report(results).count("\n") == len(results) - 1


def test_bad_arguments_get_a_clear_message(splits):
    with pytest.raises(ValueError, match="same length"):
        sanity.overfit_one_batch(small_net(), splits.X_train, splits.y_train[:5], batch_size=None)
    with pytest.raises(ValueError, match="at least 2 classes"):
        sanity.initial_loss(small_net(), splits.X_train, splits.y_train, num_classes=1)
