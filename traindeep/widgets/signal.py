"""Interactive explorers, each with a static fallback figure.

ipywidgets is imported only when a widget is built, so the package stays
importable (and the static figures usable) without a front end.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import LogLocator, NullFormatter

from .. import generator as shifted_generator
from .. import seed_everything
from ..nets import INIT_SCHEMES, mlp
from ..plots import positive
from ..probes import layer_stats
from .bundle import explorer_bundle, live_widget
from .static import static_explorer

EXPLORER_INITS = tuple(s for s in INIT_SCHEMES if s not in ("default", "zeros"))
EXPLORER_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu")


def _log_limits(values, min_decades=3):
    """Y-limits spanning the data and at least `min_decades` decades (so flat lines look flat)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return 1e-3, 1.0
    low, high = np.log10(positive.min()), np.log10(positive.max())
    pad = max(0.5, (min_decades - (high - low)) / 2)
    return 10 ** (low - pad), 10 ** (high + pad)


def signal_stats(depth=20, activation="tanh", init="xavier_normal", scale=1.0, width=128,
                 n_samples=256, seed=0):
    """Layer statistics of a freshly initialized deep MLP on standard-normal inputs."""
    generator = shifted_generator(seed)
    X = torch.randn(n_samples, width, generator=generator)
    y = torch.randint(0, 10, (n_samples,), generator=generator)
    with torch.random.fork_rng():
        seed_everything(seed)
        net = mlp(width, 10, depth=depth, width=width, activation=activation, init=init,
                  std=0.05, scale=scale)
    return layer_stats(net, X, y)


class SignalExplorer:
    """Depth, activation, init scheme and init scale -> per-layer signal statistics.

    The left panel is the forward signal's spread across inputs (`LayerStats.act_spread`): near
    zero, a layer sends the same vector for every input. The right panel is the backward signal,
    the norm of dL/dh at each layer (`LayerStats.back_norm`).

    `update(...)` is the callback: it recomputes the statistics and redraws the
    one figure in place. In a notebook, displaying the explorer shows live
    controls; front ends without a kernel (the rendered book) show a PNG
    snapshot of the current figure instead.
    """

    def __init__(self, depth=20, activation="tanh", init="xavier_normal", scale=1.0, width=128):
        self.params = dict(depth=depth, activation=activation, init=init, scale=scale, width=width)
        # A fixed layout and persistent lines: redrawing then costs one render, which
        # keeps the callback well under the 150 ms a slider drag tolerates.
        self.fig, self.axes = plt.subplots(1, 2, figsize=(8, 2.8), dpi=72)
        self.fig.subplots_adjust(left=0.1, right=0.98, bottom=0.18, top=0.86, wspace=0.35)
        plt.close(self.fig)  # shown through the widget's output, not by the inline backend
        self.act_line, = self.axes[0].plot([], [], marker=".")
        self.grad_line, = self.axes[1].plot([], [], marker=".", color="C3")
        self.axes[0].set(yscale="log", xlabel="hidden layer", ylabel="spread across inputs",
                         title="forward: std over the batch, per unit")
        self.axes[1].set(yscale="log", xlabel="hidden layer", ylabel="norm of dL/dh",
                         title="backward: gradient w.r.t. each layer")
        for ax in self.axes:
            ax.title.set_fontsize(9)
        for ax in self.axes:
            ax.yaxis.set_major_locator(LogLocator(numticks=6))
            ax.yaxis.set_minor_formatter(NullFormatter())
        self._widget = None
        self.update(**self.params)

    def update(self, **params):
        """Recompute the statistics for `params` and redraw the figure."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"unknown explorer parameter(s) {sorted(unknown)}; "
                            f"expected some of {sorted(self.params)}")
        self.params.update(params)
        stats = signal_stats(**self.params)
        layers = np.arange(1, stats.depth + 1)
        self.act_line.set_data(layers, positive(stats.act_spread))
        self.grad_line.set_data(layers, positive(stats.back_norm))
        for ax, values in zip(self.axes, (stats.act_spread, stats.back_norm)):
            ax.set_xlim(0.5, stats.depth + 0.5)
            ax.set_ylim(*_log_limits(values))
        p = self.params
        self.fig.suptitle(f"{p['activation']}, {p['init']} x {p['scale']:g}, "
                          f"{p['depth']} layers", fontsize=10)
        return stats

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png")
        return buffer.getvalue()

    @property
    def widget(self):
        """The ipywidgets front end (built on first use)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self):
        import ipywidgets as w

        p = self.params
        return live_widget(self, dict(
            depth=w.IntSlider(value=p["depth"], min=2, max=50, description="depth"),
            activation=w.Dropdown(options=EXPLORER_ACTIVATIONS, value=p["activation"],
                                  description="activation"),
            init=w.Dropdown(options=EXPLORER_INITS, value=p["init"], description="init"),
            scale=w.FloatLogSlider(value=p["scale"], base=10, min=-1, max=1, step=0.05,
                                   description="init scale"),
        ))

    # The grid the rendered book replays: every combination is computed when the explorer is shown.
    STATIC_GRID = dict(depth=(10, 30, 50), activation=("sigmoid", "tanh", "relu", "selu", "gelu"),
                       init=("xavier_normal", "he_normal", "lecun_normal"), scale=(0.5, 1.0, 2.0))

    def static_html(self) -> str:
        """The explorer for a page without a kernel: STATIC_GRID precomputed, replayed in JavaScript."""
        p, grid = self.params, self.STATIC_GRID
        controls = [(name, "init scale" if name == "scale" else name, list(values),
                     p[name] if p[name] in values else values[len(values) // 2]) for name, values in grid.items()]

        def compute(**setting):
            stats = signal_stats(width=p["width"], **setting)
            return stats.act_spread, stats.back_norm

        panels = [{"title": "forward: std over the batch, per unit", "xlabel": "hidden layer",
                   "ylabel": "spread across inputs", "logy": True, "colour": "#1f77b4"},
                  {"title": "backward: gradient w.r.t. each layer", "xlabel": "hidden layer",
                   "ylabel": "norm of dL/dh", "logy": True, "colour": "#d62728"}]
        return static_explorer(controls, panels, compute,
                               caption="This page has no Python kernel: the explorer replays networks computed "
                                       "when the book was built, for the values offered in the menus. Open the "
                                       "notebook in Colab for every value.")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return explorer_bundle(self, f"SignalExplorer({self.params})", include, exclude)


def signal_explorer(**params) -> SignalExplorer:
    """Build the signal explorer; display it (last line of a cell) to get the controls."""
    return SignalExplorer(**params)


def signal_grid(activations=("sigmoid", "tanh", "relu"),
                inits=("normal", "xavier_normal", "he_normal"), depth=30, scales=(0.5, 1.0, 2.0)):
    """Static small multiples of the explorer: the forward spread across inputs per layer for each
    (init, activation) panel, one line per init scale."""
    fig, axes = plt.subplots(len(inits), len(activations), sharex=True, sharey=True,
                             figsize=(3.0 * len(activations), 2.3 * len(inits)),
                             constrained_layout=True, squeeze=False)
    layers = np.arange(1, depth + 1)
    for row, init in enumerate(inits):
        for col, activation in enumerate(activations):
            ax = axes[row, col]
            for i, scale in enumerate(scales):
                stats = signal_stats(depth=depth, activation=activation, init=init, scale=scale)
                ax.plot(layers, positive(stats.act_spread), color=f"C{i}", label=f"x {scale:g}")
            ax.set_yscale("log")
            ax.set_title(f"{activation} / {init}", fontsize=9)
            if col == 0:
                ax.set_ylabel("spread across inputs")
            if row == len(inits) - 1:
                ax.set_xlabel("hidden layer")
    axes[0, 0].legend(title="init scale", fontsize=7, title_fontsize=7)
    return fig
