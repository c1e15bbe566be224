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


# -- reading a loss curve: is the learning rate too small, too large, or far too large? ----------


@dataclass(frozen=True)
class Diagnosis:
    """What `diagnose` concluded about a loss history.

    * `verdict` is one of "too small", "too large", "diverged" or "fine";
    * `case` is the lecture's name for the symptom: "A" (the loss decreases very slowly: the rate is
      too small), "B" (the loss oscillates wildly: too large), "C" (the loss becomes NaN or
      explodes: far too large), or "" for a healthy run;
    * `reason` says which measurement led there, in words.

    `str(diagnosis)` is a one-line summary such as ``too small (case A): ...``.
    """

    verdict: str
    case: str
    reason: str

    def __str__(self) -> str:
        return f"{self.verdict}{f' (case {self.case})' if self.case else ''}: {self.reason}"


def _losses(history) -> np.ndarray:
    if hasattr(history, "step_loss") and hasattr(history, "train_loss"):
        if getattr(history, "diverged", False) and not history.step_loss:
            return np.array(list(history.train_loss) + [float("nan")], dtype=float)
        values = history.step_loss or history.train_loss
    else:
        values = history.detach().cpu().tolist() if isinstance(history, torch.Tensor) else history
    try:
        losses = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError("diagnose expects a train.History or a sequence of losses, "
                        f"got {type(history).__name__}") from None
    if losses.ndim != 1:
        raise ValueError(f"diagnose expects a flat sequence of losses, got shape {losses.shape}")
    return losses


def diagnose(history, min_drop: float = 0.5, noise: float = 0.1, rise: float = 0.25,
             spike: float = 2.0, steady: float = 0.5, min_length: int = 5) -> Diagnosis:
    """Name the learning-rate problem that a training-loss history shows (see `Diagnosis`).

    `history` is a `train.History` (its per-step losses when it recorded them, else its per-epoch
    training losses) or a plain sequence of losses. Every threshold is a fraction of the *initial*
    loss, the first value of the history (the untrained network's loss), so the rules do not depend
    on the loss's units and a blow-up in the first steps cannot move the reference. The history is
    cut into ten pieces whose medians give its trend (`end` is the last piece's median). In order:

    1. **diverged** (case C), a rate far too large: a loss is NaN or infinite, or the loss ends above
       `spike` times the initial loss;
    2. **too large** (case B): it spiked above `spike` times the initial loss, whatever followed
       (when it ends within `1 - min_drop` of the initial loss, the blow-up killed the network:
       with cross-entropy it then sits near ln(classes), predicting every class alike); or it
       climbed back by more than `rise` above its best piece (back near its start: the rate undid
       what was learnt);
    3. the *late jitter* is the step-to-step noise of the second half (std of consecutive
       differences / sqrt 2, which ignores a smooth trend). When the loss fell by less than
       `min_drop` of the initial loss: **too large** (case B: it wanders without progress) if the
       jitter exceeds twice `noise` (a small rate on small batches jitters too), or if its pieces'
       medians span more than `rise` and either it did not fall at all or no straight line explains
       `steady` of their variance; else **too small**
       (case A: it fell steadily, or hardly moved);
    4. **too large** (case B): the late jitter exceeds `noise`;
    5. otherwise **fine**.

    The letters are ordered A < fine < B < C with the rate: on the learning-rate explorer's grid
    (tests/test_diagnose.py) a larger rate never gets an earlier letter. Raises `ValueError` for a
    finite history shorter than `min_length` (a NaN is conclusive at any length). The rules are
    heuristics for cross-entropy-like losses that should fall well below their initial value; a
    loss that never moved at all counts as case A, so read the curve as well.
    """
    losses = _losses(history)
    if len(losses) == 0:
        raise ValueError("diagnose needs at least one loss, got an empty history")
    bad = ~np.isfinite(losses)
    if bad.any():
        return Diagnosis("diverged", "C", f"the loss became {losses[bad][0]} at step {int(np.argmax(bad))}")
    if len(losses) < min_length:
        raise ValueError(f"diagnose needs at least {min_length} losses to judge a trend, got {len(losses)}")
    size = max(1, len(losses) // 10)
    chunks = np.array([np.median(losses[i:i + size]) for i in range(0, len(losses) - size + 1, size)])
    initial, end, best = losses[0], chunks[-1], chunks.min()
    scale = abs(initial) if initial != 0 else 1.0
    peak, at = losses.max(), int(np.argmax(losses))
    spiked = peak > initial + (spike - 1) * scale
    if end > initial + (spike - 1) * scale:
        return Diagnosis("diverged", "C", f"the loss exploded from {initial:.3g} to {end:.3g}")
    learnt_nothing = end > initial - min_drop * scale  # back near the start: a network the rate killed
    if spiked:
        tail = (f"and never recovered: it ends at {end:.3g}, against {initial:.3g} at the first step"
                if learnt_nothing else f"({peak / scale:.1f} times its initial value)")
        return Diagnosis("too large", "B", f"the loss spiked to {peak:.3g} at step {at} {tail}")
    if end - best > rise * scale:
        tail = f", near its initial {initial:.3g}: the rate undid what was learnt" if learnt_nothing else ""
        return Diagnosis("too large", "B", f"the loss climbed back from {best:.3g} to {end:.3g}{tail}")
    drop = (initial - end) / scale
    late = losses[len(losses) // 2:]
    jitter = np.std(np.diff(late)) / np.sqrt(2) / scale if len(late) > 2 else 0.0
    if drop < min_drop:
        spread = np.var(chunks)
        fit = 1 - np.var(chunks - np.polyval(np.polyfit(np.arange(len(chunks)), chunks, 1),
                                             np.arange(len(chunks)))) / spread if spread > 0 else 1.0
        moved = chunks.max() - chunks.min() > rise * scale
        if moved and (drop <= 0 or fit < steady) or jitter > 2 * noise:
            return Diagnosis("too large", "B", f"the loss wanders without progress (fell by {max(drop, 0):.0%} "
                             f"of its initial value; a trend line explains {max(fit, 0):.0%} of its ups and downs)")
        return Diagnosis("too small", "A", f"the loss fell by only {max(drop, 0):.0%} of its initial value "
                         f"({initial:.3g} to {end:.3g}; expected at least {min_drop:.0%})")
    if jitter > noise:
        return Diagnosis("too large", "B", f"the loss jumps by {jitter:.0%} of its initial value from step "
                         f"to step late in training (threshold {noise:.0%})")
    return Diagnosis("fine", "", f"the loss fell by {drop:.0%} of its initial value and settled "
                     f"(late jitter {jitter:.0%})")


# -- sanity checks before tuning (written in traindeep/sanity.py, offered here with the other probes) --
from .sanity import (  # noqa: E402, F401 (re-exported: the sanity checks are probes too)
    CheckResult,
    gradient_flow,
    initial_loss,
    label_in_features,
    overfit_one_batch,
    report,
    run_all,
    split_leak,
)
