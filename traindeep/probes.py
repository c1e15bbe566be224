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
    """One value per hidden layer (index 0 is the layer nearest the input)."""

    act_mean: np.ndarray
    act_std: np.ndarray
    grad_norm: np.ndarray
    grad_std: np.ndarray
    dead_frac: np.ndarray
    saturated_frac: np.ndarray

    @property
    def depth(self) -> int:
        return len(self.act_std)

    def table(self) -> str:
        """A markdown table, one row per layer."""
        rows = ["| layer | act mean | act std | grad norm | grad std | dead | saturated |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for i in range(self.depth):
            rows.append(f"| {i + 1} | {self.act_mean[i]:.3g} | {self.act_std[i]:.3g} | "
                        f"{self.grad_norm[i]:.3g} | {self.grad_std[i]:.3g} | "
                        f"{self.dead_frac[i]:.0%} | {self.saturated_frac[i]:.0%} |")
        return "\n".join(rows)


def _activation_modules(model: nn.Module):
    kinds = tuple(ACTIVATIONS.values())
    return [m for m in model.modules() if isinstance(m, kinds) and not isinstance(m, nn.Identity)]


def layer_stats(model: nn.Module, X: torch.Tensor, y: torch.Tensor | None = None) -> LayerStats:
    """Statistics of every hidden activation of `model` on the batch `X`.

    Forward hooks record each activation's output; the gradient of the loss
    (cross-entropy with `y`, or the sum of outputs when `y` is None) is taken
    with respect to the weights of the Linear layer that feeds it. A unit is
    dead when its output is zero for every example of the batch.
    """
    acts = _activation_modules(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not acts:
        raise ValueError("layer_stats needs a model with activation modules (nn.ReLU, nn.Tanh, ...); "
                         f"found none in {type(model).__name__}")
    if len(linears) < len(acts):
        raise ValueError(f"expected one nn.Linear before each activation, found {len(linears)} "
                         f"Linear layers for {len(acts)} activations")
    outputs: dict[nn.Module, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out: outputs.__setitem__(mod, out.detach()))
               for m in acts]
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
        stats["grad_norm"].append(grad.norm().item())
        stats["grad_std"].append(grad.std().item())
        stats["dead_frac"].append((a == 0).all(dim=0).float().mean().item())
        saturated = SATURATION.get(type(act))
        stats["saturated_frac"].append(saturated(a).float().mean().item() if saturated else 0.0)
    model.zero_grad(set_to_none=True)
    return LayerStats(**{k: np.array(v) for k, v in stats.items()})
