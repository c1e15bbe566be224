"""Sanity checks to run before tuning anything: each catches one silent bug cheaply.

Every check returns a `CheckResult` (a pass flag, the measured number, a readable
message) instead of raising, so a notebook can run them all and print a report.
The checks work on a copy of the model: running them never changes its weights,
its batch-norm statistics or its train/eval mode.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import seed_everything

PASS, FAIL = "✓", "✗"


@dataclass
class CheckResult:
    """The outcome of one sanity check."""

    name: str
    passed: bool
    value: float
    message: str
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{PASS if self.passed else FAIL} {self.name}: {self.message}"


def _batch(X: torch.Tensor, y: torch.Tensor, batch_size: int | None):
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    if batch_size is not None:
        X, y = X[:batch_size], y[:batch_size]
    return X, y


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def initial_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                 tol: float = 0.3) -> CheckResult:
    """Cross-entropy of the untrained `model` on (X, y) against ln(num_classes).

    A network that knows nothing yet should spread its probability evenly, so its
    loss is close to ln C. Far above means overconfident logits (often a too-large
    init scale); far below means the labels are guessable without learning (a leak).
    Passes when |loss - ln C| <= tol (in nats).
    """
    num_classes = num_classes or int(y.max()) + 1
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    net = copy.deepcopy(model).train()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(net(X.to(_device(net))), y.to(_device(net))).item()
    expected = math.log(num_classes)
    ok = math.isfinite(loss) and abs(loss - expected) <= tol
    message = f"loss {loss:.3f} at init, ln({num_classes}) = {expected:.3f}"
    if not ok:
        message += (" — too high: logits too large at init (check the init scale)" if loss > expected
                    else " — too low: the labels are guessable before training (check for a leak)")
    return CheckResult("initial loss", ok, loss, message, {"expected": expected, "tol": tol})


def overfit_one_batch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int | None = 32,
                      steps: int = 200, lr: float = 1e-2, threshold: float = 0.05) -> CheckResult:
    """Train a copy of `model` with Adam on one small batch; its loss should reach near zero.

    A network that cannot memorise 32 examples has a bug in its wiring, its loss or
    its data (labels that do not match inputs still fit, but slowly: compare the
    recorded curve). Passes when the final loss is below `threshold`.
    """
    X, y = _batch(X, y, batch_size)
    net = copy.deepcopy(model).train()
    X, y = X.to(_device(net)), y.to(_device(net))
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        return CheckResult("overfit one batch", False, float("nan"), "no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr)
    curve = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(X), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    final = curve[-1]
    ok = math.isfinite(final) and final < threshold
    message = f"loss {curve[0]:.3f} -> {final:.4f} after {steps} steps on {len(X)} examples"
    if not ok:
        message += f" — should fall below {threshold}: check the model, the loss and the labels"
    return CheckResult("overfit one batch", ok, final, message, {"curve": curve, "threshold": threshold})


def gradient_flow(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int | None = 256,
                  min_norm: float = 1e-6) -> CheckResult:
    """Every parameter tensor should receive a non-zero gradient from one backward pass.

    A frozen parameter (`requires_grad=False`), a layer cut off by `.detach()` or
    dead units everywhere all show up as a gradient norm of zero. The value is the
    smallest norm; `details["norms"]` holds every parameter's.
    """
    X, y = _batch(X, y, batch_size)
    net = copy.deepcopy(model).train()
    loss = nn.functional.cross_entropy(net(X.to(_device(net))), y.to(_device(net)))
    trainable = [p for p in net.parameters() if p.requires_grad]
    if trainable:
        loss.backward()
    norms = {name: (p.grad.norm().item() if p.grad is not None else 0.0) for name, p in net.named_parameters()}
    silent = [name for name, norm in norms.items() if not norm > min_norm]
    smallest = min(norms.values()) if norms else float("nan")
    if silent:
        message = f"{len(silent)} of {len(norms)} parameter tensors get no gradient: {', '.join(silent)}"
    else:
        message = f"all {len(norms)} parameter tensors get a gradient (smallest norm {smallest:.1e})"
    return CheckResult("gradient flow", not silent, smallest, message, {"norms": norms, "silent": silent})


def _row_keys(X: torch.Tensor, decimals: int) -> list[bytes]:
    array = np.round(np.asarray(X.detach().cpu(), dtype=np.float64), decimals) + 0.0  # -0.0 -> 0.0
    return [row.tobytes() for row in array.reshape(len(array), -1)]


def split_leak(splits, decimals: int = 5) -> CheckResult:
    """Count validation and test rows whose inputs also appear in the training set (or in each other).

    Rows are compared after rounding to `decimals`. A shared row lets a model score by
    remembering it, so validation and test accuracy overstate what it learned. The
    value is the number of validation plus test rows that have a twin in another split.
    """
    train = set(_row_keys(splits.X_train, decimals))
    val_keys, test_keys = _row_keys(splits.X_val, decimals), _row_keys(splits.X_test, decimals)
    val_in_train = sum(k in train for k in val_keys)
    test_in_train = sum(k in train for k in test_keys)
    val = set(val_keys)
    test_in_val = sum(k in val and k not in train for k in test_keys)
    leaked = val_in_train + test_in_train + test_in_val
    message = (f"{val_in_train} validation and {test_in_train} test rows also in train, "
               f"{test_in_val} test rows also in validation")
    if leaked:
        message += " — deduplicate before splitting"
    details = {"val_in_train": val_in_train, "test_in_train": test_in_train, "test_in_val": test_in_val}
    return CheckResult("split leak", leaked == 0, float(leaked), message, details)


def label_in_features(splits, max_values: int | None = None, threshold: float = 0.99) -> CheckResult:
    """Look for an input column that gives the label away.

    For each column with few distinct values (at most `max_values`, default twice the
    number of classes), map each training value to its most common label and score
    that lookup on the validation set. A column that alone reaches `threshold`
    accuracy is a label leak (an ID, a file name, the label itself). The value is the
    best single-column validation accuracy.
    """
    max_values = max_values or 2 * splits.num_classes
    X_train, y_train = np.asarray(splits.X_train), np.asarray(splits.y_train)
    X_val, y_val = np.asarray(splits.X_val), np.asarray(splits.y_val)
    best, leaky = 0.0, []
    for j in range(X_train.shape[1]):
        values = np.round(X_train[:, j], 5)
        distinct = np.unique(values)
        if len(distinct) > max_values:
            continue
        lookup = {v: np.bincount(y_train[values == v]).argmax() for v in distinct}
        guesses = np.array([lookup.get(v, -1) for v in np.round(X_val[:, j], 5)])
        accuracy = float((guesses == y_val).mean())
        best = max(best, accuracy)
        if accuracy >= threshold:
            leaky.append(j)
    if leaky:
        message = f"column(s) {leaky} alone predict the validation labels ({100 * best:.1f}% accuracy)"
    else:
        message = f"no single column predicts the labels (best {100 * best:.1f}% on validation)"
    return CheckResult("label in features", not leaky, best, message, {"columns": leaky})


def run_all(model: nn.Module, splits, seed: int = 0) -> list[CheckResult]:
    """Every check above, on `model` and the training data of `splits` (seeded, so it repeats)."""
    seed_everything(seed)
    X, y = splits.X_train, splits.y_train
    return [initial_loss(model, X, y, splits.num_classes), overfit_one_batch(model, X, y),
            gradient_flow(model, X, y), split_leak(splits), label_in_features(splits)]


def report(results: list[CheckResult]) -> str:
    """One line per check, as `str(result)` writes it."""
    return "\n".join(str(r) for r in results)
