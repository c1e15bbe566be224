"""The learning-rate explorer: optimizer, learning rate, momentum / β and schedule -> what training does.

Three panels answer one question, "what does this rate do?": the path of the optimizer on a 2-D
valley (an ill-conditioned quadratic, computed on the spot: it is cheap), the training loss and
validation accuracy of a small network on the digits (precomputed: a network cannot be trained
inside a 100 ms redraw), and `probes.diagnose`'s verdict on that loss curve (case A, B, C or fine).

The networks for every point of the grid (OPTIMIZERS x RATES x BETAS x SCHEDULES) are trained
once, stacked by `batched.fit_many`, and cached for the session; the live widget and the page of
the rendered book replay the same runs.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .. import batched
from .. import data as datasets
from ..probes import diagnose
from .bundle import explorer_bundle, live_widget
from .static import static_explorer

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
RATES = (3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
BETAS = (0.8, 0.9, 0.99)  # momentum for momentum / Nesterov, RMSProp's decay ρ, Adam's β1
SCHEDULES = ("constant", "cosine", "warmup + cosine")
WARMUP = 0.1  # the fraction of the steps spent warming up

# The valley: f(x, y) = (CURVATURE[0] x² + CURVATURE[1] y²) / 2, a condition number of 20.
CURVATURE = np.array([0.2, 4.0])
START = np.array([-4.0, 1.5])
PATH_STEPS = 60
ESCAPED = 1e3  # a path this far out has diverged; it is cut there

# The network: two hidden layers of 32 ReLU units on the digits, one seed (the explorer shows what a
# reader would see on one run; the chapter's comparisons use several).
NETWORK = dict(depth=2, width=32, activation="relu", init="he_normal")
EPOCHS, BATCH_SIZE, SEED = 6, 32, 0
LOSS_LIMITS = (1e-3, 1e4)  # the loss panel's fixed range; a blow-up beyond it is drawn at the edge
LOSS_POINTS = 40  # the loss curve on the page: averages over this many windows of steps


def schedule_factor(name: str, step: int, total: int) -> float:
    """The multiplier on the peak rate at `step` (0, 1, ..., total - 1) of a schedule stepped per batch."""
    if name == "constant":
        return 1.0
    warmup = round(WARMUP * total) if name == "warmup + cosine" else 0
    if step < warmup:
        return (step + 1) / warmup
    if name in ("cosine", "warmup + cosine"):
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")


def valley_loss(x, y):
    return 0.5 * (CURVATURE[0] * np.asarray(x) ** 2 + CURVATURE[1] * np.asarray(y) ** 2)


LEVELS = tuple(np.geomspace(0.05, 20, 8))  # the contour levels drawn under the path


def level_curves(levels=LEVELS, points=60):
    """The valley's contour lines, ellipses (x, y) where valley_loss = each level."""
    angle = np.linspace(0, 2 * np.pi, points)
    return [(np.sqrt(2 * c / CURVATURE[0]) * np.cos(angle), np.sqrt(2 * c / CURVATURE[1]) * np.sin(angle))
            for c in levels]


def trajectory(optimizer: str, lr: float, beta: float = 0.9, schedule: str = "constant",
               steps: int = PATH_STEPS, start=START) -> np.ndarray:
    """The points (steps + 1, 2) an optimizer visits on the valley, with torch.optim's update rules
    (RMSProp and Adam with eps = 1e-8, Adam's β2 = 0.999). A diverging path stops where it escapes."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    p = np.array(start, dtype=float)
    buf, square, first = np.zeros(2), np.zeros(2), np.zeros(2)
    points = [p.copy()]
    for t in range(steps):
        g = CURVATURE * p
        rate = lr * schedule_factor(schedule, t, steps)
        if optimizer == "sgd":
            p = p - rate * g
        elif optimizer in ("momentum", "nesterov"):
            buf = g if t == 0 else beta * buf + g
            p = p - rate * (g + beta * buf if optimizer == "nesterov" else buf)
        elif optimizer == "rmsprop":
            square = beta * square + (1 - beta) * g * g
            p = p - rate * g / (np.sqrt(square) + 1e-8)
        else:  # adam
            first = beta * first + (1 - beta) * g
            square = 0.999 * square + 0.001 * g * g
            m_hat, v_hat = first / (1 - beta ** (t + 1)), square / (1 - 0.999 ** (t + 1))
            p = p - rate * m_hat / (np.sqrt(v_hat) + 1e-8)
        if not np.all(np.abs(p) < ESCAPED):
            break
        points.append(p.copy())
    return np.array(points)


@dataclass
class Run:
    """One precomputed network: per-step training losses, validation accuracy per epoch, and
    `probes.diagnose`'s verdict on the losses with the lecture's case letter ("" when fine)."""
    step_loss: list
    val_acc: list
    diagnosis: str
    case: str = ""

    @property
    def verdict(self) -> str:
        """The diagnosis as the panels show it, e.g. "too small (case A)"."""
        return self.diagnosis + (f" (case {self.case})" if self.case else "")


def _fit_group(optimizer, beta, schedule, rates, splits):
    """Train one network per rate (same optimizer, β and schedule) in one stack."""
    name = {"momentum": "sgd"}.get(optimizer, optimizer)
    runs = [{"lr": lr, "seed": SEED, **({"momentum": beta} if optimizer in ("momentum", "nesterov") else {})}
            for lr in rates]
    total = EPOCHS * math.ceil(len(splits.X_train) / BATCH_SIZE)
    histories, _ = batched.fit_many(runs, splits, epochs=EPOCHS, batch_size=BATCH_SIZE, optimizer=name,
                                    record_steps=True, device="cpu",
                                    schedule=lambda t: schedule_factor(schedule, t, total),
                                    betas=(beta, 0.999), alpha=beta, **NETWORK)
    out = []
    for h in histories:
        found = diagnose(h.step_loss)
        out.append(Run(list(h.step_loss), list(h.val_acc), found.verdict, found.case))
    return out


@functools.lru_cache(maxsize=2)
def network_runs(rates=RATES, betas=BETAS, schedules=SCHEDULES, optimizers=OPTIMIZERS) -> dict:
    """{(optimizer, lr, beta, schedule): Run} for the whole grid, trained once per session.

    Plain SGD has no β: its runs are trained once per schedule and filed under every β."""
    splits = datasets.digits()
    grid = {}
    with torch.random.fork_rng():
        for optimizer in optimizers:
            for schedule in schedules:
                for beta in (betas if optimizer != "sgd" else betas[:1]):
                    for lr, run in zip(rates, _fit_group(optimizer, beta, schedule, rates, splits)):
                        for b in (betas if optimizer == "sgd" else (beta,)):
                            grid[(optimizer, lr, b, schedule)] = run
    return grid


def _windows(values, width):
    """Means over consecutive windows of `width` steps (NaN where a window holds a NaN): a light curve
    for the page; a run cut short by divergence gives fewer windows."""
    values = np.asarray(values, dtype=float)
    return np.array([values[i:i + width].mean() for i in range(0, len(values), width)])


class LRExplorer:
    """Optimizer, learning rate, momentum / β and schedule -> the valley path, the network's curves and
    their diagnosis. `update(...)` is the callback: a look-up and an in-place redraw of one figure."""

    def __init__(self, optimizer="momentum", lr=0.03, beta=0.9, schedule="constant", grid=None):
        self.grid = network_runs() if grid is None else grid
        self.options = dict(optimizer=sorted({k[0] for k in self.grid}, key=OPTIMIZERS.index),
                            lr=sorted({k[1] for k in self.grid}), beta=sorted({k[2] for k in self.grid}),
                            schedule=sorted({k[3] for k in self.grid}, key=SCHEDULES.index))
        self.params = dict(optimizer=optimizer, lr=lr, beta=beta, schedule=schedule)
        # A figure of its own (not pyplot's): shown through the widget's output or the snapshot only.
        self.fig = Figure(figsize=(11, 3.1), dpi=72)
        FigureCanvasAgg(self.fig)
        self.axes = self.fig.subplots(1, 3)
        self.fig.subplots_adjust(left=0.06, right=0.98, bottom=0.17, top=0.8, wspace=0.3)
        ax_path, ax_loss, ax_acc = self.axes
        for x, y in level_curves():
            ax_path.plot(x, y, color="0.75", lw=0.8)
        ax_path.plot([0], [0], marker="*", color="k", ms=8)
        ax_path.set(xlim=(-5, 5), ylim=(-3, 3), title="path on a valley (condition number 20)", xlabel="x",
                    ylabel="y")
        self.steps = max(len(run.step_loss) for run in self.grid.values())  # the longest run, in steps
        ax_loss.set(yscale="log", xlim=(0, self.steps + 1), ylim=LOSS_LIMITS, xlabel="step", ylabel="training loss",
                    title="network on the digits: loss")
        ax_acc.set(xlim=(0.5, EPOCHS + 0.5), ylim=(0, 1), xlabel="epoch", ylabel="validation accuracy",
                   title="validation accuracy")
        for ax in self.axes:
            ax.title.set_fontsize(9)
        # Fixed axes: the frame is drawn once and each redraw paints only these artists over a copy of it
        # (blitting), which is what keeps the callback under 100 ms.
        self.path_line, = ax_path.plot([], [], marker=".", ms=3, lw=1, color="C0", animated=True)
        self.loss_line, = ax_loss.plot([], [], color="C3", lw=1, animated=True)
        self.acc_line, = ax_acc.plot([], [], marker="o", color="C2", animated=True)
        self.title = self.fig.text(0.5, 0.93, "", ha="center", fontsize=10, animated=True)
        self.fig.canvas.draw()
        self._frame = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        self._widget = None
        self.update(**self.params)

    def run(self, **params) -> Run:
        """The precomputed network for a setting (the current one for missing keys)."""
        p = {**self.params, **params}
        return self.grid[(p["optimizer"], p["lr"], p["beta"], p["schedule"])]

    def update(self, **params) -> Run:
        """Look up the run for `params` and redraw the figure in place."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"unknown explorer parameter(s) {sorted(unknown)}; expected some of {sorted(self.params)}")
        for name, value in params.items():
            if value not in self.options[name]:
                raise ValueError(f"{name}={value!r} is not on the explorer's grid; choose one of {self.options[name]}")
        self.params.update(params)
        p = self.params
        run = self.run()
        path = trajectory(p["optimizer"], p["lr"], p["beta"], p["schedule"])
        self.path_line.set_data(path[:, 0], path[:, 1])
        losses = np.asarray(run.step_loss, dtype=float)
        self.loss_line.set_data(np.arange(1, len(losses) + 1), np.clip(losses, *LOSS_LIMITS))
        self.acc_line.set_data(np.arange(1, len(run.val_acc) + 1), run.val_acc)
        escaped = " (the path escaped the valley)" if len(path) <= PATH_STEPS else ""
        self.title.set_text(f"{p['optimizer']}, lr {p['lr']:g}, β {p['beta']:g}, {p['schedule']}: "
                            f"diagnosis: {run.verdict}{escaped}")
        canvas = self.fig.canvas
        canvas.restore_region(self._frame)
        for artist in (self.path_line, self.loss_line, self.acc_line, self.title):
            self.fig.draw_artist(artist)
        return run

    def png(self) -> bytes:
        """The figure as last drawn by `update` (the blitted canvas, encoded)."""
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())).save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    @property
    def widget(self):
        """The ipywidgets front end (built on first use)."""
        if self._widget is None:
            import ipywidgets as w

            p, o = self.params, self.options
            self._widget = live_widget(self, dict(
                optimizer=w.Dropdown(options=o["optimizer"], value=p["optimizer"], description="optimizer"),
                lr=w.SelectionSlider(options=[(f"{v:g}", v) for v in o["lr"]], value=p["lr"],
                                     description="learning rate"),
                beta=w.SelectionSlider(options=[(f"{v:g}", v) for v in o["beta"]], value=p["beta"],
                                       description="momentum / β"),
                schedule=w.Dropdown(options=o["schedule"], value=p["schedule"], description="schedule"),
            ))
        return self._widget

    def static_html(self) -> str:
        """The explorer for a page without a kernel: the whole grid, replayed in JavaScript."""
        o = self.options
        controls = [(name, label, list(o[name]), self.params[name]) for name, label in
                    (("optimizer", "optimizer"), ("lr", "learning rate"), ("beta", "momentum / β"),
                     ("schedule", "schedule"))]
        background = [[round(float(v), 2) for v in np.column_stack([x, y]).ravel()] for x, y in level_curves()]
        width = math.ceil(self.steps / LOSS_POINTS)

        def compute(optimizer, lr, beta, schedule):
            run = self.grid[(optimizer, lr, beta, schedule)]
            path = trajectory(optimizer, lr, beta, schedule)
            return [path.ravel(), _windows(run.step_loss, width), run.val_acc,
                    f"diagnosis of the loss curve: {run.verdict}"]

        panels = [{"kind": "xy", "title": "path on a valley (condition number 20)", "xlabel": "x", "ylabel": "y",
                   "xlim": [-5, 5], "ylim": [-3, 3], "background": background, "colour": "#1f77b4"},
                  {"title": "network on the digits: loss", "xlabel": "step", "ylabel": "training loss",
                   "logy": True, "colour": "#d62728", "xmax": self.steps, "dx": width},
                  {"title": "validation accuracy", "xlabel": "epoch", "ylabel": "accuracy", "ylim": [0, 1],
                   "colour": "#2ca02c"},
                  {"kind": "text"}]
        return static_explorer(controls, panels, compute,
                               caption="This page has no Python kernel: the explorer replays networks trained "
                                       "when the book was built (one seed each), for the values offered in the "
                                       "menus. Open the notebook in Colab to run it live.")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return explorer_bundle(self, f"LRExplorer({self.params})", include, exclude)


def lr_explorer(**params) -> LRExplorer:
    """Build the learning-rate explorer (trains its grid of networks on first use, a few seconds);
    display it (last line of a cell) to get the controls."""
    return LRExplorer(**params)
