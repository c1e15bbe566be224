"""Train many small MLPs of one shape at once: a learning-rate grid × seeds in one loop.

A fair comparison needs every contender at its own tuned learning rate and over several seeds,
which for the course's small networks means dozens of runs whose cost is mostly per-step
overhead, not arithmetic. `fit_many` stacks K networks of the same shape into batched
matrices (one `torch.baddbmm` per layer for all of them), gives each its own learning rate,
momentum, weight decay, seed and initial scale, and steps them together. Each network sees
exactly what `train.fit` would show it:

* the same initial weights as `nets.mlp` after `seed_everything(seed)`;
* the same order of mini-batches (a generator seeded with `seed`, one permutation per epoch);
* the same update as `torch.optim.SGD` (momentum, Nesterov, weight decay), `RMSprop`, `Adam` or
  `AdamW`, and the same learning rate at every step as a `LambdaLR` given `schedule`.

So its `History` matches `fit`'s to rounding (the tests check it in float64). A network whose
loss turns NaN is marked diverged at the end of that epoch, as in `fit`, and its NaNs stay in its
own slice of the stacked weights. The stack trains on `traindeep.device()` (a GPU when there is
one, where tiny networks only pay off batched); the data orders are drawn on the CPU, as `fit`
draws them, so a run's batches are the same on either device.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import device as default_device
from . import generator as shifted_generator
from . import nets, seed_everything
from .train import History, epoch_loss

PER_RUN = ("lr", "momentum", "weight_decay", "seed", "scale")  # may differ between the stacked runs
OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adam", "adamw")


class Stack:
    """K MLPs of one shape as stacked tensors: weights[i] is (K, out, in), biases[i] is (K, 1, out).

    With `norm` ("batch" or "layer"), each hidden layer is followed by its normalization, as in
    `nets.mlp`: gains[i] and shifts[i] are (K, 1, width); batch norm standardizes each network's
    units over its own mini-batch in training mode (`self.training`) and keeps running averages,
    updated as `nn.BatchNorm1d` does (momentum 0.1, unbiased variance), for evaluation.
    """

    MOMENTUM, EPS = 0.1, 1e-5  # nn.BatchNorm1d's and nn.LayerNorm's defaults

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], activation: str,
                 norm: str | None = None):
        self.weights, self.biases = weights, biases
        self.activation = nets.ACTIVATIONS[activation]()
        self.norm, self.training = norm, True
        hidden = biases[:-1]
        self.gains = [torch.ones_like(b).requires_grad_(True) for b in hidden] if norm else []
        self.shifts = [torch.zeros_like(b).requires_grad_(True) for b in hidden] if norm else []
        self.running_mean = [torch.zeros_like(b) for b in hidden] if norm == "batch" else []
        self.running_var = [torch.ones_like(b) for b in hidden] if norm == "batch" else []

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [p for pair in zip(self.weights, self.biases) for p in pair] + self.gains + self.shifts

    def _normalize(self, h: torch.Tensor, i: int) -> torch.Tensor:
        if self.norm == "layer":
            mean, var = h.mean(-1, keepdim=True), h.var(-1, keepdim=True, correction=0)
        elif self.training:
            if h.shape[1] < 2:
                raise ValueError("batch norm needs at least 2 examples per batch in training mode, got 1 "
                                 "(nn.BatchNorm1d refuses it too): choose a batch size that does not leave one")
            mean, var = h.mean(1, keepdim=True), h.var(1, keepdim=True, correction=0)
            with torch.no_grad():
                unbiased = var * h.shape[1] / (h.shape[1] - 1)
                self.running_mean[i].lerp_(mean, self.MOMENTUM)
                self.running_var[i].lerp_(unbiased, self.MOMENTUM)
        else:
            mean, var = self.running_mean[i], self.running_var[i]
        return (h - mean) / torch.sqrt(var + self.EPS) * self.gains[i] + self.shifts[i]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, classes) for inputs X of shape (K, B, features) or (B, features) shared by all."""
        h = X if X.dim() == 3 else X.expand(len(self.weights[0]), *X.shape)
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, W.transpose(1, 2))
            if i < len(self.weights) - 1:
                h = self.activation(self._normalize(h, i) if self.norm else h)
        return h

    @torch.no_grad()
    def evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy and accuracy of each network on (X, y) in evaluation mode (batch norm uses
        its running averages): two CPU tensors of length K."""
        where = self.weights[0].device
        X, y = X.to(where, self.weights[0].dtype), y.to(where)
        training, self.training = self.training, False
        try:
            logits = self.forward(X)
        finally:
            self.training = training
        K, n = logits.shape[:2]
        losses = nn.functional.cross_entropy(logits.reshape(K * n, -1), y.repeat(K), reduction="none")
        return losses.view(K, n).mean(1).cpu(), (logits.argmax(-1) == y).double().mean(1).cpu()


def build(runs: list[dict], in_features: int, out_features: int, depth: int, width: int, activation: str,
          init: str, std: float = 0.01, dtype=torch.float32, device=None, norm: str | None = None) -> Stack:
    """The stacked networks, each initialized exactly as `nets.mlp` after `seed_everything(seed)` (a norm
    draws nothing, so the Linear layers are those of `nets.mlp(..., norm=norm)` too)."""
    layers = []
    for run in runs:
        seed_everything(run.get("seed", 0))
        model = nets.mlp(in_features, out_features, depth=depth, width=width, activation=activation, init=init,
                         std=std, scale=run.get("scale", 1.0))
        layers.append([m for m in model if isinstance(m, nn.Linear)])
    where = device or torch.device("cpu")
    weights = [torch.stack([net[i].weight.detach() for net in layers]).to(where, dtype) for i in range(depth + 1)]
    biases = [torch.stack([net[i].bias.detach() for net in layers]).unsqueeze(1).to(where, dtype)
              for i in range(depth + 1)]
    for p in weights + biases:
        p.requires_grad_(True)
    return Stack(weights, biases, activation, norm)


def _per_run(runs, key, default, dtype):
    return torch.tensor([float(run.get(key, default)) for run in runs], dtype=dtype)


def _check(runs: list[dict], optimizer: str, data, batch_size: int, epochs: int) -> None:
    if not runs:
        raise ValueError("fit_many needs at least one run")
    for run in runs:
        unknown = set(run) - set(PER_RUN)
        if unknown:
            raise ValueError(f"unknown per-run setting(s) {sorted(unknown)}; a run may set {', '.join(PER_RUN)} "
                             "(the shape, optimizer, batch size and epochs are shared by the stack)")
        if "lr" not in run or not run["lr"] > 0:
            raise ValueError(f"every run needs a positive learning rate 'lr', got {run}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; batched training supports {', '.join(OPTIMIZERS)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if data.X_train.dim() != 2:
        raise ValueError(f"expected flat inputs (samples, features), got shape {tuple(data.X_train.shape)}")


class _Optimizer:
    """torch.optim's SGD / RMSprop / Adam / AdamW update rules, with one hyperparameter value per stacked
    run. `factor` multiplies every run's learning rate (a schedule sets it before each step)."""

    def __init__(self, name, params, runs, dtype, device, betas=(0.9, 0.999), alpha=0.99, eps=1e-8):
        self.name, self.params, self.betas, self.alpha, self.eps, self.t = name, params, betas, alpha, eps, 0
        self.factor = 1.0
        shape = lambda p: (-1,) + (1,) * (p.dim() - 1)
        column = lambda key, default: _per_run(runs, key, default, dtype).to(device)
        self.lr = [column("lr", 0).view(shape(p)) for p in params]
        self.wd = [column("weight_decay", 0).view(shape(p)) for p in params]
        if name == "nesterov":  # as train.make_optimizer: Nesterov without a momentum means 0.9
            runs = [{**run, "momentum": run.get("momentum") or 0.9} for run in runs]
        self.mu = [_per_run(runs, "momentum", 0.0, dtype).to(device).view(shape(p)) for p in params]
        self.state = [None] * len(params)
        self.second = [torch.zeros_like(p) for p in params] if name in ("rmsprop", "adam", "adamw") else None

    @torch.no_grad()
    def step(self):
        self.t += 1
        for i, p in enumerate(self.params):
            g, lr = p.grad, self.lr[i] * self.factor
            if self.name in ("sgd", "nesterov"):
                g = g + self.wd[i] * p
                buf = g.clone() if self.state[i] is None else self.state[i].mul_(self.mu[i]).add_(g)
                self.state[i] = buf
                g = g + self.mu[i] * buf if self.name == "nesterov" else buf
                p.sub_(lr * g)
                continue
            if self.name == "rmsprop":  # with a zero momentum buffer, as torch keeps one when momentum > 0
                g = g + self.wd[i] * p
                self.second[i].mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
                buf = torch.zeros_like(p) if self.state[i] is None else self.state[i]
                self.state[i] = buf.mul_(self.mu[i]).add_(g / (self.second[i].sqrt() + self.eps))
                p.sub_(lr * self.state[i])
                continue
            if self.name == "adamw":
                p.mul_(1 - lr * self.wd[i])
            else:
                g = g + self.wd[i] * p
            beta1, beta2 = self.betas
            m = torch.zeros_like(p) if self.state[i] is None else self.state[i]
            self.state[i] = m.mul_(beta1).add_(g, alpha=1 - beta1)
            self.second[i].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            step_size = lr / (1 - beta1 ** self.t)
            denom = (self.second[i].sqrt() / math.sqrt(1 - beta2 ** self.t)).add_(self.eps)
            p.sub_(step_size * m / denom)


def train_stack(stack: Stack, data, seeds, update, *, epochs: int, batch_size: int = 64,
                every: int | None = None, on_every=None, after_epoch=None) -> torch.Tensor:
    """The minibatch loop of `fit_many` and of the chapters' own stacked trainers; returns each network's
    loss at every step, (K, steps) on the CPU.

    Network k draws its batches as `train.fit(seed=seeds[k])` does (one permutation per epoch from
    `traindeep.generator(seed)`) and computes its mean cross-entropy; the backward pass of the sum gives
    every network the gradient of its own loss. Then `update(t)` changes the parameters (t counts the
    steps from 0 over the whole run): an optimizer's step, an update rule written out, a rate or momentum
    per network and step, several parameter groups. Every `every` steps `on_every(t)` runs (a validation
    check, a schedule that watches it). After each epoch `after_epoch(losses, correct)` gets the epoch's
    losses (K, steps) and the number of training examples each network classified right, both on the
    CPU; training stops when it returns True.

    `data.X_train` is (n, features), shared by every network, or (K, n, features) with `y_train` (K, n):
    each network its own training set of n examples (chapter 6 fine-tunes each on its own labelled
    subset). A `batch_size` of n or more trains full-batch.
    """
    where, dtype = stack.weights[0].device, stack.weights[0].dtype
    X, y = data.X_train.to(where, dtype), data.y_train.to(where)
    K, own = len(seeds), X.dim() == 3
    if own and (X.shape[0] != K or y.shape != X.shape[:2]):
        raise ValueError(f"per-network training data must be X_train (K, n, features) and y_train (K, n) with "
                         f"K = {K} seeds; got {tuple(X.shape)} and {tuple(y.shape)}")
    n, rows = X.shape[-2], torch.arange(K, device=where).unsqueeze(1)
    generators = [shifted_generator(seed) for seed in seeds]
    every_loss, t = [], 0
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(where)  # (K, n)
        step_losses, correct = [], torch.zeros(K, device=where)
        for start in range(0, n, batch_size):
            idx = orders[:, start:start + batch_size]
            X_batch, y_batch = (X[rows, idx], y[rows, idx]) if own else (X[idx], y[idx])
            logits = stack.forward(X_batch)
            b = idx.shape[1]
            losses = nn.functional.cross_entropy(logits.reshape(K * b, -1), y_batch.reshape(-1),
                                                 reduction="none").view(K, b).mean(1)
            for p in stack.parameters:
                p.grad = None
            losses.sum().backward()  # each network's gradient is that of its own loss
            update(t)
            t += 1
            step_losses.append(losses.detach())
            correct += (logits.detach().argmax(-1) == y_batch).sum(1)
            if every and t % every == 0:
                on_every(t - 1)
        epoch_losses = torch.stack(step_losses, dim=1).cpu()  # (K, steps); one transfer per epoch
        every_loss.append(epoch_losses)
        if after_epoch is not None and after_epoch(epoch_losses, correct.cpu()):
            break
    return torch.cat(every_loss, dim=1)


def fit_many(runs: list[dict], data, *, depth: int = 2, width: int = 64, activation: str = "relu",
             init: str = "he_normal", std: float = 0.01, epochs: int = 10, batch_size: int = 64,
             optimizer: str = "sgd", record_steps: bool = False, dtype=torch.float32, device=None,
             schedule=None, betas: tuple[float, float] = (0.9, 0.999), alpha: float = 0.99,
             norm: str | None = None):
    """Train one MLP per entry of `runs` (each a dict of PER_RUN settings; `lr` is required).

    Returns `(histories, stack)`: a `train.History` per run, as `train.fit` would record it for
    `nets.mlp(..., scale=run["scale"])` trained with `lr`, `momentum`, `weight_decay` and
    `seed=run["seed"]`, and the trained `Stack` (its `evaluate(X, y)` scores every network).
    `device` defaults to `traindeep.device()`. `schedule(step)` (steps counted from 0 over the
    whole run) multiplies every run's rate at that step, as `LambdaLR(optimizer, schedule)` stepped
    per batch would; `betas` are Adam's and AdamW's, `alpha` RMSprop's decay of its square average.
    `norm` ("batch" or "layer") puts `nets.mlp`'s normalization after every hidden layer.
    """
    _check(runs, optimizer, data, batch_size, epochs)
    if norm not in nets.NORMS:
        raise ValueError(f"unknown norm {norm!r}; batched training supports {', '.join(map(repr, nets.NORMS))}")
    K = len(runs)
    where = torch.device(device) if device is not None else default_device()
    stack = build(runs, data.X_train.shape[1], int(data.y_train.max()) + 1, depth, width, activation, init, std,
                  dtype, where, norm)
    opt = _Optimizer(optimizer, stack.parameters, runs, dtype, where, betas=betas, alpha=alpha)
    n = len(data.X_train)
    histories = [History() for _ in runs]
    live = torch.ones(K, dtype=torch.bool)

    def step(t):
        if schedule is not None:
            opt.factor = float(schedule(t))
        opt.step()

    def record(epoch_losses, correct):
        val_loss, val_acc = stack.evaluate(data.X_val, data.y_val)
        for k, history in enumerate(histories):
            if not live[k]:
                continue
            if record_steps:
                history.step_loss.extend(epoch_losses[k].tolist())
            if not torch.isfinite(epoch_losses[k]).all():
                history.mark_diverged()
                live[k] = False
                continue
            history.train_loss.append(epoch_loss(epoch_losses[k], batch_size, n))
            history.train_acc.append(correct[k].item() / n)
            history.val_loss.append(float(val_loss[k]))
            history.val_acc.append(float(val_acc[k]))
        return not live.any()

    train_stack(stack, data, [run.get("seed", 0) for run in runs], step, epochs=epochs, batch_size=batch_size,
                after_epoch=record)
    return histories, stack
