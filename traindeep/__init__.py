"""Companion package of the course book *Training Deep Networks*.

Importing it has no side effects: no seeding, no downloads, no widget imports.
The lessons themselves (initializers, optimizers, ...) live in the notebooks;
this package holds the shared infrastructure.
"""

import os
import random

__version__ = "0.1.0"


SEED_OFFSET_VARIABLE = "TRAINDEEP_SEED_OFFSET"
# Seed labels 0, 1, 2... name a notebook's draws; an offset maps every label to another, equally valid draw.
# The stride keeps the shifted labels of offset k away from the plain labels a notebook uses at offset 0.
SEED_STRIDE = 100_003


def seed_offset() -> int:
    """The draw `make verify` asked for: TRAINDEEP_SEED_OFFSET (a non-negative int), 0 when unset."""
    text = os.environ.get(SEED_OFFSET_VARIABLE, "0").strip() or "0"
    if not text.isdigit():
        raise ValueError(f"{SEED_OFFSET_VARIABLE} must be a non-negative integer, got {text!r}")
    return int(text)


def shifted(seed: int) -> int:
    """The seed a random generator really gets for the seed label `seed` (itself at offset 0)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed + SEED_STRIDE * seed_offset()


def seeds(n: int, start: int = 0) -> tuple:
    """The seed labels of an experiment repeated `n` times: (start, ..., start + n - 1).

    Labels stay the same at every offset (tables and records name them); the
    draws behind them change with TRAINDEEP_SEED_OFFSET through `shifted`.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return tuple(range(start, start + n))


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so a notebook re-runs to the same numbers (at the same seed offset)."""
    import numpy as np
    import torch

    actual = shifted(seed)
    os.environ["PYTHONHASHSEED"] = str(actual)
    random.seed(actual)
    np.random.seed(actual % 2**32)
    torch.manual_seed(actual)


def rng(seed: int = 0):
    """A NumPy generator for the seed label `seed` (offset-aware): use it instead of np.random.default_rng."""
    import numpy as np

    return np.random.default_rng(shifted(seed))


def generator(seed: int = 0):
    """A torch.Generator for the seed label `seed` (offset-aware): use it instead of manual_seed on a new one."""
    import torch

    return torch.Generator().manual_seed(shifted(seed))


def device():
    """The GPU when one is present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
