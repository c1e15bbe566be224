"""Figures the chapters share: per-layer statistics and learning curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def positive(values):
    """Replace zeros (and negatives) by NaN so a log axis leaves a gap, not an error."""
    values = np.asarray(values, dtype=float)
    return np.where(values > 0, values, np.nan)


def plot_layer_stats(stats: dict, axes=None, title: str | None = None):
    """Activation std and weight-gradient norm per layer, one line per labelled network.

    `stats` maps a label to a `traindeep.probes.LayerStats`.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    else:
        fig = axes[0].figure
    for label, s in stats.items():
        layers = np.arange(1, s.depth + 1)
        axes[0].plot(layers, positive(s.act_std), marker=".", label=label)
        axes[1].plot(layers, positive(s.grad_norm), marker=".", label=label)
    axes[0].set(xlabel="hidden layer", ylabel="activation std", yscale="log",
                title="forward: activations")
    axes[1].set(xlabel="hidden layer", ylabel="weight-gradient norm", yscale="log",
                title="backward: gradients")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_learning_curves(histories: dict, metrics=("loss", "acc"), axes=None):
    """Training (dashed) and validation (solid) curves for each labelled history."""
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2),
                                 constrained_layout=True, squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    for ax, metric in zip(axes, metrics):
        for i, (label, h) in enumerate(histories.items()):
            color = f"C{i}"
            epochs = np.arange(1, h.epochs + 1)
            ax.plot(epochs, getattr(h, f"train_{metric}"), "--", color=color)
            ax.plot(epochs, getattr(h, f"val_{metric}"), "-", color=color, label=label)
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} (dashed: train, solid: validation)")
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=8)
    return fig
