"""Companion package of the course book *Training Deep Networks*.

Importing it has no side effects: no seeding, no downloads, no widget imports.
The lessons themselves (initializers, optimizers, ...) live in the notebooks;
this package holds the shared infrastructure.
"""

import os
import random

__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so a notebook re-runs to the same numbers."""
    import numpy as np
    import torch

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device():
    """The GPU when one is present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
