import math

import pytest
import torch
from torch import nn

from traindeep import nets


@pytest.mark.parametrize("scheme,expected", [
    ("xavier_normal", math.sqrt(2 / (300 + 200))),
    ("xavier_uniform", math.sqrt(2 / (300 + 200))),
    ("he_normal", math.sqrt(2 / 300)),
    ("he_uniform", math.sqrt(2 / 300)),
    ("lecun_normal", math.sqrt(1 / 300)),
])
def test_init_schemes_have_the_published_std(scheme, expected):
    torch.manual_seed(0)
    layer = nets.init_linear_(nn.Linear(300, 200), scheme)
    assert layer.weight.std().item() == pytest.approx(expected, rel=0.03)
    assert layer.weight.mean().item() == pytest.approx(0, abs=expected * 0.02)
    assert torch.all(layer.bias == 0)


def test_uniform_schemes_are_bounded_like_torch():
    torch.manual_seed(0)
    ours = nets.init_linear_(nn.Linear(300, 200), "xavier_uniform").weight
    bound = math.sqrt(6 / 500)
    assert ours.abs().max().item() <= bound and ours.abs().max().item() > 0.99 * bound


def test_normal_zeros_and_scale():
    torch.manual_seed(0)
    assert nets.init_linear_(nn.Linear(400, 400), "normal", std=0.05).weight.std().item() == \
        pytest.approx(0.05, rel=0.03)
    assert torch.all(nets.init_linear_(nn.Linear(5, 5), "zeros").weight == 0)
    he2 = nets.init_linear_(nn.Linear(400, 400), "he_normal", scale=2.0).weight.std().item()
    assert he2 == pytest.approx(2 * math.sqrt(2 / 400), rel=0.03)


def test_mlp_structure_and_forward_shape():
    net = nets.mlp(10, 3, depth=4, width=32, activation="tanh", norm="batch", dropout=0.1)
    kinds = [type(m) for m in net]
    assert kinds.count(nn.Linear) == 5 and kinds.count(nn.Tanh) == 4
    assert kinds.count(nn.BatchNorm1d) == 4 and kinds.count(nn.Dropout) == 4
    assert net(torch.randn(7, 10)).shape == (7, 3)


def test_a_norm_leaves_the_seeded_weights_as_they_were():
    # Paired with/without-normalization comparisons rely on it: same seed, same Linear weights.
    nets_by_norm = {}
    for norm in (None, "batch", "layer"):
        torch.manual_seed(3)
        nets_by_norm[norm] = [m for m in nets.mlp(10, 3, depth=3, width=16, norm=norm) if isinstance(m, nn.Linear)]
    for norm in ("batch", "layer"):
        for plain, normed in zip(nets_by_norm[None], nets_by_norm[norm]):
            assert torch.equal(plain.weight, normed.weight) and torch.equal(plain.bias, normed.bias)
    # The bias that batch norm cancels gets no gradient, so keeping it changes nothing in training mode.
    net = nets.mlp(10, 3, depth=2, width=16, norm="batch")
    nn.functional.cross_entropy(net(torch.randn(32, 10)), torch.randint(0, 3, (32,))).backward()
    assert net[0].bias.grad.abs().max() < 1e-6 < net[0].weight.grad.abs().max()


@pytest.mark.parametrize("kwargs,message", [
    ({"activation": "relu6"}, "unknown activation 'relu6'; expected one of"),
    ({"init": "glorot"}, "unknown init scheme 'glorot'"),
    ({"norm": "group"}, "unknown norm 'group'"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"depth": -1}, "depth must be >= 0"),
])
def test_mlp_rejects_unknown_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nets.mlp(4, 2, **kwargs)
