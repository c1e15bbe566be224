"""Interactive explorers, each with a static fallback figure.

ipywidgets is imported only when a widget is built, so the package stays
importable (and the static figures usable) without a front end.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import LogLocator, NullFormatter

from .. import generator as shifted_generator
from .. import seed_everything
from ..nets import ACTIVATIONS, INIT_SCHEMES, INIT_STD, init_linear_, mlp
from ..plots import positive
from ..probes import layer_stats
from .bundle import explorer_bundle, live_widget
from .static import static_explorer

EXPLORER_INITS = tuple(s for s in INIT_SCHEMES if s not in ("default", "zeros"))
EXPLORER_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "silu")
# The explorer measures every network on this many standard-normal inputs, live and on the page. Half of
# `signal_stats`'s default 256 halves the cost of the page's grid (its matrix products are most of it),
# and the curves keep their shape: the spread moves by a median 12 % between the two batches, and the
# backward norm of a mean loss by the sqrt(2) it should.
EXPLORER_INPUTS = 128


def _log_limits(values, min_decades=3):
    """Y-limits spanning the data and at least `min_decades` decades (so flat lines look flat)."""
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return 1e-3, 1.0
    low, high = np.log10(positive.min()), np.log10(positive.max())
    pad = max(0.5, (min_decades - (high - low)) / 2)
    return 10 ** (low - pad), 10 ** (high + pad)


NORMAL_STD = 0.05  # the std of the plain "normal" scheme in every explorer network
# The schemes whose weights init_linear_ draws as normal_(0, sigma): exactly sigma (rounded to float32) times
# the same layer's normal_(0, 1), so one draw of the random stream serves every scheme and scale.
SCALED_SCHEMES = ("normal", "xavier_normal", "he_normal", "lecun_normal")


def _sigma(init, scale, fan_in, fan_out):
    """The weights' std that `nets.init_linear_` gives a layer (the equality tests hold them together)."""
    return scale * (NORMAL_STD if init == "normal" else INIT_STD[init](fan_in, fan_out))


def _probe_batch(width, n_samples, seed):
    """The standard-normal inputs and random labels every explorer network is measured on."""
    generator = shifted_generator(seed)
    X = torch.randn(n_samples, width, generator=generator)
    y = torch.randint(0, 10, (n_samples,), generator=generator)
    return X, y


def signal_stats(depth=20, activation="tanh", init="xavier_normal", scale=1.0, width=128,
                 n_samples=256, seed=0):
    """Layer statistics of a freshly initialized deep MLP on standard-normal inputs."""
    X, y = _probe_batch(width, n_samples, seed)
    with torch.random.fork_rng():
        seed_everything(seed)
        net = mlp(width, 10, depth=depth, width=width, activation=activation, init=init,
                  std=NORMAL_STD, scale=scale)
    return layer_stats(net, X, y)


def _weights(depths, init, scale, width, seed, std=NORMAL_STD):
    """The Linear layers `signal_stats` draws for each depth, built once for all of them.

    `nets.mlp` draws its hidden layers in order and then its output layer. Every hidden layer here is
    width x width, so a network of depth d has the first d hidden layers of a deeper one (same seed):
    the deepest network's hidden layers serve every depth, and only the output layer is drawn again,
    from where the random stream stood after d hidden layers. Returns (hidden layers, {depth: output
    layer}) as weight and bias tensors.
    """
    deepest, states, hidden = max(depths), {}, []
    with torch.random.fork_rng():
        seed_everything(seed)
        for i in range(deepest + 1):
            if i in depths:
                states[i] = torch.get_rng_state()
            if i < deepest:
                hidden.append(init_linear_(torch.nn.Linear(width, width), init, std, scale))
        heads = {}
        for depth in depths:
            torch.set_rng_state(states[depth])
            heads[depth] = init_linear_(torch.nn.Linear(width, 10), init, std, scale)
    return [(m.weight.detach(), m.bias.detach()) for m in hidden], {d: (m.weight.detach(), m.bias.detach())
                                                                    for d, m in heads.items()}


def signal_profiles(settings, width=128, n_samples=256, seed=0) -> dict:
    """The explorer's two curves for many networks at once: {(depth, activation, init, scale):
    (act_spread, back_norm)} for each setting, equal to `signal_stats`'s to float32 rounding, in a
    fraction of its time.

    Each network is drawn once for all depths (see `_weights`; the normal schemes scale one draw, see
    `SCALED_SCHEMES`) and the networks are stacked, so that a layer of all of them is one batched
    matrix product (as in `batched`). For each activation the
    forward pass runs once to the deepest depth asked for and serves every depth; networks whose
    hidden layers come out identical (Xavier and LeCun on square layers: sqrt(2 / (w + w)) =
    sqrt(1 / w)) share it. The backward signal is carried down from each network's own output layer
    through the activation's slope as autograd computes it, without the weight gradients that
    `layer_stats` also computes. Cheapest when the settings form a grid.
    """
    settings = list(dict.fromkeys(tuple(s) for s in settings))
    if n_samples < 2:
        raise ValueError(f"signal_profiles needs a batch of at least 2 inputs to measure a spread, got {n_samples}")
    for depth, activation, _, _ in settings:
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        if activation not in ACTIVATIONS or activation == "identity":
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{', '.join(repr(a) for a in ACTIVATIONS if a != 'identity')}")
    pairs = list(dict.fromkeys((init, scale) for _, _, init, scale in settings))
    stack = _Stack(pairs, {s[0] for s in settings}, width, seed)
    X, y = _probe_batch(width, n_samples, seed)
    out = {}
    for activation in dict.fromkeys(s[1] for s in settings):
        depths = sorted({s[0] for s in settings if s[1] == activation})
        spread, back = stack.profiles(activation, depths, X, y)
        for depth, _, init, scale in (s for s in settings if s[1] == activation):
            k = stack.order.index(pairs.index((init, scale)))
            out[(depth, activation, init, scale)] = (spread[k, :depth].numpy(), back[depth][k].numpy())
    return {setting: out[setting] for setting in settings}


@contextlib.contextmanager
def _subnormals_flushed():
    """Arithmetic on subnormal floats (below 1.2e-38) is several times slower on a CPU, and a vanishing
    backward signal passes through them. Inside this block they count as zero (and after it, they are
    kept again). It must not hold around a norm: the squares of entries below 1e-19 are subnormal, and
    `layer_stats` keeps them."""
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)


def _spread(a):
    """`LayerStats.act_spread` of each network in a stack (K, batch, units): every unit's std across the
    batch, averaged over units. float32 `std` accumulates in float64; two passes in float32 match it to
    rounding for a quarter of its cost: the first subtracts the mean, the second what the float32 mean
    got wrong (which matters for a deep sigmoid network, whose spread is 1e-7 of its mean)."""
    deviations = a - a.mean(dim=1, keepdim=True)
    deviations -= deviations.mean(dim=1, keepdim=True)
    return (deviations.square_().sum(dim=1).sqrt_() / math.sqrt(a.shape[1] - 1)).mean(dim=1)


class _Stack:
    """The networks of every (init, scale) pair, stacked for batched matrix products: hidden weights
    W[i] (K, out, in), biases b[i] (K, 1, out), and the output layer of each depth.

    Networks with identical hidden layers go forward once. Inside the stack the networks are ordered
    with one of each kind of hidden layers first (the `passes` that go forward) and their `twins`
    after; `order[j]` is the pair at position j.
    """

    def __init__(self, pairs, depths, width, seed):
        deepest, standard, built, kinds = max(depths), None, [], []
        for k, (init, scale) in enumerate(pairs):
            if init in SCALED_SCHEMES:
                if standard is None:  # the random stream's draws, once: std 1, scale 1
                    standard = _weights(depths, "normal", 1.0, width, seed, std=1.0)
                sigma = _sigma(init, scale, width, width)
                built.append(([(w * sigma, b) for w, b in standard[0]],
                              {d: (w * _sigma(init, scale, width, 10), b) for d, (w, b) in standard[1].items()}))
                kinds.append(torch.tensor(sigma, dtype=torch.float32).item())  # the same: identical hidden layers
            else:
                built.append(_weights(depths, init, scale, width, seed))
                kinds.append(("drawn alone", k))
        firsts, twin_of = [], {}
        for k, kind in enumerate(kinds):
            match = next((j for j, f in enumerate(firsts) if kinds[f] == kind), None)
            if match is None:
                firsts.append(k)
            else:
                twin_of[k] = match
        self.order = firsts + list(twin_of)
        self.passes = len(firsts)
        self.twins = torch.tensor(list(twin_of.values()), dtype=torch.long)
        self.W = [torch.stack([built[k][0][i][0] for k in self.order]) for i in range(deepest)]
        self.b = [torch.stack([built[k][0][i][1] for k in self.order]).unsqueeze(1) for i in range(deepest)]
        self.heads = {d: (torch.stack([built[k][1][d][0] for k in self.order]).transpose(1, 2),
                          torch.stack([built[k][1][d][1] for k in self.order]).unsqueeze(1)) for d in depths}

    def _all(self, passes):
        """A tensor over the forward passes, extended with a copy for each twin."""
        return passes if not len(self.twins) else torch.cat([passes, passes[self.twins]])

    def profiles(self, activation, depths, X, y):
        """(act_spread (K, deepest), {depth: back_norm (K, depth)}) with `activation`, in `order`."""
        function, P = ACTIVATIONS[activation](), self.passes
        h, inputs, total, spreads, tops = X.expand(P, *X.shape), [], 0, [], {}
        for i in range(max(depths)):
            z = torch.baddbmm(self.b[i][:P], h, self.W[i][:P].transpose(1, 2)).requires_grad_()
            a = function(z)
            inputs.append(z)
            total = total + a.sum()
            h = a.detach()
            spreads.append(_spread(h))
            if i + 1 in depths:
                tops[i + 1] = self._all(h)
        # Every layer's activation slope as autograd has it, at a gradient of ones, in one backward call
        # (through a sum: passing the ones as grad_outputs makes a process's first call import sympy).
        slopes = torch.autograd.grad(total, inputs)
        # The backward signal, carried down from each depth's output layer; grads[d] is (K, batch, units).
        grads, norms = {}, {d: [] for d in depths}
        for layer in range(max(depths), 0, -1):
            if layer in depths:
                W_out, b_out = self.heads[layer]
                top = tops[layer].requires_grad_()
                logits = torch.baddbmm(b_out, top, W_out)
                K, B = logits.shape[:2]
                # Each network's mean cross-entropy; summing over the stack keeps their gradients apart.
                loss = torch.nn.functional.cross_entropy(logits.reshape(K * B, -1), y.repeat(K), reduction="sum") / B
                grads[layer] = torch.autograd.grad(loss, top)[0]
            for depth, grad in grads.items():
                norms[depth].append(grad.flatten(1).norm(dim=1))
            if layer > 1:
                slope = slopes[layer - 1]
                twin_slope = slope[self.twins] if len(self.twins) else None
                # An entry flushed here is below 1e-38: its square underflows in a float32 norm anyway, and
                # what it would add to the layer below is as small.
                with _subnormals_flushed():
                    for depth, grad in grads.items():  # one product per depth: cheaper than one taller product
                        grad[:P] *= slope
                        if twin_slope is not None:
                            grad[P:] *= twin_slope
                        grads[depth] = torch.bmm(grad, self.W[layer - 1])
        back = {d: torch.stack(n[::-1], 1) for d, n in norms.items()}  # layer 1 first
        return self._all(torch.stack(spreads, 1)), back


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
            # Minor ticks at 2 and 5 only: the default eight per decade, over the many decades a vanishing
            # signal spans, were a third of the figure's drawing time.
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0), numticks=12))
            ax.yaxis.set_minor_formatter(NullFormatter())
        self._widget, self._stats, self._png = None, None, None
        self.update(**self.params)

    def update(self, **params):
        """Recompute the statistics for `params` and redraw the figure (nothing to do when they are
        the ones shown: the live widget's first call repeats the explorer's own)."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"unknown explorer parameter(s) {sorted(unknown)}; "
                            f"expected some of {sorted(self.params)}")
        if self._stats is not None and {**self.params, **params} == self.params:
            return self._stats
        self.params.update(params)
        stats = self._stats = signal_stats(**self.params, n_samples=EXPLORER_INPUTS)
        self._png = None
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
        """The figure as `update` last drew it, encoded once."""
        if self._png is None:
            buffer = io.BytesIO()
            self.fig.savefig(buffer, format="png")
            self._png = buffer.getvalue()
        return self._png

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

        profiles = signal_profiles(itertools.product(*grid.values()), width=p["width"], n_samples=EXPLORER_INPUTS)

        def compute(depth, activation, init, scale):
            return profiles[(depth, activation, init, scale)]

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
    profiles = signal_profiles(itertools.product([depth], activations, inits, scales))
    for row, init in enumerate(inits):
        for col, activation in enumerate(activations):
            ax = axes[row, col]
            for i, scale in enumerate(scales):
                spread, _ = profiles[(depth, activation, init, scale)]
                ax.plot(layers, positive(spread), color=f"C{i}", label=f"x {scale:g}")
            ax.set_yscale("log")
            ax.set_title(f"{activation} / {init}", fontsize=9)
            if col == 0:
                ax.set_ylabel("spread across inputs")
            if row == len(inits) - 1:
                ax.set_xlabel("hidden layer")
    axes[0, 0].legend(title="init scale", fontsize=7, title_fontsize=7)
    return fig
