"""A plain, readable training loop that returns its history."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import generator as shifted_generator


@dataclass
class History:
    """Per-epoch metrics (and per-step losses when asked for)."""

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    diverged: bool = False

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def mark_diverged(self) -> None:
        """Record a diverged epoch: NaN for every per-epoch metric, and no more epochs."""
        self.diverged = True
        for metric in ("train_loss", "train_acc", "val_loss", "val_acc"):
            getattr(self, metric).append(float("nan"))

    def best(self, metric: str = "val_acc") -> float:
        values = [v for v in getattr(self, metric) if not math.isnan(v)]
        if not values:
            return float("nan")
        return max(values) if metric.endswith("acc") else min(values)


@torch.no_grad()
def _placement(model: nn.Module, X: torch.Tensor) -> dict:
    """Where inputs go: the model's device, and its floating dtype for floating inputs (so a float64
    network takes the float32 data sets as they are)."""
    first = next(model.parameters())
    return {"device": first.device, **({"dtype": first.dtype} if X.is_floating_point() else {})}


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024):
    """Mean cross-entropy loss and accuracy of `model` on (X, y), in eval mode; inputs follow the
    model's device and floating dtype."""
    was_training = model.training
    model.eval()
    where = _placement(model, X)
    total_loss, correct = 0.0, 0
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size].to(**where), y[start:start + batch_size].to(where["device"])
        logits = model(xb)
        total_loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yb).sum().item()
    model.train(was_training)
    return total_loss / len(X), correct / len(X)


def epoch_loss(step_losses: torch.Tensor, batch_size: int, n: int) -> float:
    """The epoch's training loss from its per-step mean losses, weighting the last, shorter batch by its
    size: a running average over the epoch (as Keras reports it), which saves a second pass."""
    sizes = torch.full((len(step_losses),), float(batch_size), dtype=step_losses.dtype)
    sizes[-1] = n - batch_size * (len(step_losses) - 1)
    return float((step_losses * sizes).sum() / n)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """A torch optimizer by name: sgd, nesterov, adagrad, rmsprop, adam, adamw, nadam, adamax."""
    factories = {
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay),
        "nesterov": lambda: torch.optim.SGD(params, lr=lr, momentum=momentum or 0.9,
                                            nesterov=True, weight_decay=weight_decay),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr, momentum=momentum,
                                               weight_decay=weight_decay),
        "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
        "nadam": lambda: torch.optim.NAdam(params, lr=lr, weight_decay=weight_decay),
        "adamax": lambda: torch.optim.Adamax(params, lr=lr, weight_decay=weight_decay),
    }
    if name not in factories:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(factories)}")
    return factories[name]()


def fit(model: nn.Module, data, epochs: int = 10, lr: float = 0.1, optimizer="sgd",
        momentum: float = 0.0, weight_decay: float = 0.0, batch_size: int = 64,
        scheduler=None, clip_grad_norm: float | None = None, record_steps: bool = False,
        progress: bool = True, seed: int | None = None) -> History:
    """Train `model` on `data` (a `traindeep.data.Splits`) with mini-batch cross-entropy.

    `optimizer` is a name (see `make_optimizer`) or a ready `torch.optim.Optimizer`.
    `scheduler` is called as `scheduler(optimizer)` to build an LR scheduler that
    steps once per batch. Training stops early, with `history.diverged = True`,
    when the loss becomes NaN or infinite. Inputs follow the model's device and floating dtype.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    where = _placement(model, data.X_train)
    device = where["device"]
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
        optimizer, model.parameters(), lr, momentum, weight_decay)
    sched = scheduler(opt) if scheduler is not None else None
    generator = shifted_generator(seed) if seed is not None else None
    X, y = data.X_train.to(**where), data.y_train.to(device)
    history = History()
    for _ in tqdm(range(epochs), desc="epochs", disable=not progress, leave=False):
        model.train()
        order = torch.randperm(len(X), generator=generator).to(device)
        step_losses, predictions = [], []
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            logits = model(X[idx])
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            opt.step()
            if sched is not None:
                sched.step()
            # Kept as tensors: reading them every step would stall a GPU.
            step_losses.append(loss.detach())
            predictions.append(logits.detach().argmax(dim=1))
        losses = torch.stack(step_losses).cpu()
        if record_steps:
            history.step_loss.extend(losses.tolist())
        if not torch.isfinite(losses).all():
            history.mark_diverged()
            break
        history.train_loss.append(epoch_loss(losses, batch_size, len(X)))
        history.train_acc.append((torch.cat(predictions) == y[order]).sum().item() / len(X))
        val_loss, val_acc = evaluate(model, data.X_val, data.y_val)
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
    return history
