"""Per-layer activation and gradient statistics, measured through hooks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .nets import ACTIVATIONS

# Activation outputs this close to a flat end of the curve count as saturated.
SATURATION = {nn.Sigmoid: lambda a: (a < 0.02) | (a > 0.98), nn.Tanh: lambda a: a.abs() > 0.98}


@dataclass
class LayerStats:
    """One value per hidden layer (index 0 is the layer nearest the input).

    Two of them can look healthy while a network fails, so read them with the rest:

    * `act_std` is the std of the whole batch x units tensor of a layer's outputs. It stays
      flat when every input gives the same (but spread-out) vector.
    * `act_spread` is the std *across inputs*: per unit over the batch, then averaged over
      units. Near zero means the layer sends the same vector whatever the input: the forward
      signal has collapsed, and nothing above it can tell the inputs apart.
    * `back_norm` is the norm of the backward signal dL/dh, the gradient with respect to the
      layer's outputs (over the whole batch). It is what vanishes or explodes with depth.
    * `grad_norm` is the norm of dL/dW of the Linear layer that feeds the layer. It is the
      product of the backward signal and the layer's input, so shrinking activations can hide
      a vanishing backward signal (and vice versa): a ratio of two grad_norms proves little.
    """

    act_mean: np.ndarray
    act_std: np.ndarray
    act_spread: np.ndarray
    back_norm: np.ndarray
    grad_norm: np.ndarray
    grad_std: np.ndarray
    dead_frac: np.ndarray
    saturated_frac: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.act_std)

    def table(self) -> str:
        """A markdown table, one row per layer."""
        rows = ["| layer | act mean | act std | spread across inputs | dL/dh norm | dL/dW norm | dead | saturated |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for i in range(self.depth):
            rows.append(f"| {i + 1} | {self.act_mean[i]:.3g} | {self.act_std[i]:.3g} | {self.act_spread[i]:.3g} | "
                        f"{self.back_norm[i]:.3g} | {self.grad_norm[i]:.3g} | "
                        f"{self.dead_frac[i]:.0%} | {self.saturated_frac[i]:.0%} |")
        return "\n".join(rows)


def _activation_modules(model: nn.Module):
    kinds = tuple(ACTIVATIONS.values())
    return [m for m in model.modules() if isinstance(m, kinds) and not isinstance(m, nn.Identity)]


def layer_stats(model: nn.Module, X: torch.Tensor, y: torch.Tensor | None = None) -> LayerStats:
    """Statistics of every hidden activation of `model` on the batch `X` (see `LayerStats`).

    Forward hooks record each activation's output and, through a tensor hook,
    the gradient of the loss (cross-entropy with `y`, or the sum of outputs
    when `y` is None) with respect to it; weight gradients are those of the
    Linear layer that feeds each activation. A unit is dead when its output is
    zero for every example of the batch.
    """
    acts = _activation_modules(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not acts:
        raise ValueError("layer_stats needs a model with activation modules (nn.ReLU, nn.Tanh, ...); "
                         f"found none in {type(model).__name__}")
    if len(linears) < len(acts):
        raise ValueError(f"expected one nn.Linear before each activation, found {len(linears)} "
                         f"Linear layers for {len(acts)} activations")
    if len(X) < 2:
        raise ValueError(f"layer_stats needs a batch of at least 2 inputs to measure a spread, got {len(X)}")
    outputs: dict[nn.Module, torch.Tensor] = {}
    backward: dict[nn.Module, torch.Tensor] = {}

    def record(module, inputs, output):
        outputs[module] = output.detach()
        if output.requires_grad:
            output.register_hook(lambda grad: backward.__setitem__(module, grad.detach()))

    handles = [m.register_forward_hook(record) for m in acts]
    try:
        model.zero_grad(set_to_none=True)
        logits = model(X)
        loss = logits.sum() if y is None else nn.functional.cross_entropy(logits, y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    stats = {k: [] for k in LayerStats.__dataclass_fields__}
    for act, linear in zip(acts, linears):
        a = outputs[act]
        grad = linear.weight.grad
        stats["act_mean"].append(a.mean().item())
        stats["act_std"].append(a.std().item())
        stats["act_spread"].append(a.std(dim=0).mean().item())
        stats["back_norm"].append(backward[act].norm().item() if act in backward else 0.0)
        stats["grad_norm"].append(grad.norm().item())
        stats["grad_std"].append(grad.std().item())
        stats["dead_frac"].append((a == 0).all(dim=0).float().mean().item())
        saturated = SATURATION.get(type(act))
        stats["saturated_frac"].append(saturated(a).float().mean().item() if saturated else 0.0)
    model.zero_grad(set_to_none=True)
    return LayerStats(**{k: np.array(v) for k, v in stats.items()})


@torch.no_grad()
def weight_change(before: dict, model: nn.Module) -> np.ndarray:
    """Relative change ||W - W0|| / ||W0|| of each Linear layer's weight, input side first.

    `before` is a copy of `model.state_dict()` taken before training (`copy.deepcopy`).
    """
    changes = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            start = before[f"{name}.weight"]
            changes.append(((module.weight - start).norm() / start.norm().clamp_min(1e-12)).item())
    if not changes:
        raise ValueError(f"weight_change needs nn.Linear layers; found none in {type(model).__name__}")
    return np.array(changes)
