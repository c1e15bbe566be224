"""An MLP builder and the named weight-initialization schemes of the course."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}

# Each scheme gives the standard deviation of a zero-mean weight from (fan_in, fan_out).
INIT_STD = {
    "zeros": lambda fan_in, fan_out: 0.0,
    "xavier_normal": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "xavier_uniform": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he_normal": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "he_uniform": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "lecun_normal": lambda fan_in, fan_out: math.sqrt(1.0 / fan_in),
}
INIT_SCHEMES = ("default", "normal", *INIT_STD)
NORMS = (None, "batch", "layer")


def _choice(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(map(repr, allowed))}")


@torch.no_grad()
def init_linear_(layer: nn.Linear, scheme: str = "he_normal", std: float = 0.01,
                 scale: float = 1.0) -> nn.Linear:
    """Initialize a linear layer in place with a named scheme; biases start at zero.

    `std` is used by the "normal" scheme only; `scale` multiplies any scheme's
    standard deviation (1.0 is the scheme as published). "default" keeps
    PyTorch's own initialization.
    """
    _choice(scheme, INIT_SCHEMES, "init scheme")
    if scheme == "default":
        return layer
    fan_out, fan_in = layer.weight.shape
    sigma = scale * (std if scheme == "normal" else INIT_STD[scheme](fan_in, fan_out))
    if scheme.endswith("uniform"):
        bound = math.sqrt(3.0) * sigma  # U(-a, a) has std a / sqrt(3)
        layer.weight.uniform_(-bound, bound)
    else:
        layer.weight.normal_(0.0, sigma)
    if layer.bias is not None:
        layer.bias.zero_()
    return layer


def mlp(in_features: int, out_features: int, depth: int = 3, width: int = 128,
        activation: str = "relu", init: str = "he_normal", std: float = 0.01,
        scale: float = 1.0, norm: str | None = None, dropout: float = 0.0) -> nn.Sequential:
    """A multilayer perceptron with `depth` hidden layers of `width` units.

    Each hidden block is Linear -> [norm] -> activation -> [dropout]; the
    output layer is a plain Linear that returns logits.

    With `norm="batch"` the Linear layers keep their bias, although batch norm
    cancels it (chapter 4): it starts at zero and its gradient is zero up to
    rounding, so it changes nothing in training mode, and keeping it means that
    the same seed gives the same weights with and without a norm, which is what
    lets a with/without comparison pair its seeds. Build the layers yourself
    (`nn.Linear(..., bias=False)`) where the saved parameters matter.
    """
    _choice(activation, tuple(ACTIVATIONS), "activation")
    _choice(norm, NORMS, "norm")
    if depth < 0 or width < 1:
        raise ValueError(f"depth must be >= 0 and width >= 1, got depth={depth}, width={width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    fan_in = in_features
    for _ in range(depth):
        layers.append(init_linear_(nn.Linear(fan_in, width), init, std, scale))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(init_linear_(nn.Linear(fan_in, out_features), init, std, scale))
    return nn.Sequential(*layers)
