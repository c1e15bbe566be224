"""The book's one noise rule: is a difference between two contenders larger than the seeds' noise?

Every comparison in the book trains both contenders on the same seeds, so the
difference is taken seed by seed (paired): what varies with the seed (the
initialization, the data order) cancels, and what is left is the technique.
The 95 % interval of the mean paired difference uses Student's t with n - 1
degrees of freedom. It decides the verdict:

* the whole interval above zero: "better" (a beats b);
* the whole interval below zero: "worse";
* zero inside it: "within the noise".

Welch's unpaired interval is only for arms that cannot share seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BETTER, WORSE, NOISE = "better", "worse", "within the noise"


@dataclass(frozen=True)
class Comparison:
    """a − b: the mean difference, its 95 % interval, the number of seeds and the verdict."""

    diff: float
    low: float
    high: float
    n: int
    verdict: str
    paired: bool = True

    def __str__(self) -> str:
        return self.describe()

    def describe(self, scale: float = 100.0, unit: str = " points") -> str:
        """`+1.2 points [+0.4, +2.0] (95 %, 5 paired seeds): better`; `scale` turns fractions into points."""
        kind = "paired seeds" if self.paired else "seeds per arm (unpaired)"
        return (f"{scale * self.diff:+.1f}{unit} [{scale * self.low:+.1f}, {scale * self.high:+.1f}] "
                f"(95 %, {self.n} {kind}): {self.verdict}")


def _values(x, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=float).ravel()
    if array.size < 2:
        raise ValueError(f"{name} needs at least two seeds to measure noise, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a NaN or infinite value (a diverged seed?): {array.tolist()}; "
                         "count diverged seeds separately and compare the rest")
    return array


def _verdict(low: float, high: float) -> str:
    return BETTER if low > 0 else WORSE if high < 0 else NOISE


def compare(a, b, paired: bool = True, confidence: float = 0.95) -> Comparison:
    """Compare two arms measured on the same seeds (a[i] and b[i] share seed i), or unpaired (Welch).

    Returns the mean of a − b with its t-based interval and the verdict. A paired
    comparison needs equally long arms in the same seed order.
    """
    from scipy.stats import t

    a, b = _values(a, "a"), _values(b, "b")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    quantile = (1 + confidence) / 2
    if paired:
        if a.size != b.size:
            raise ValueError(f"a paired comparison needs one value per seed in each arm, got {a.size} and {b.size}")
        d = a - b
        n = d.size
        half = t.ppf(quantile, n - 1) * d.std(ddof=1) / math.sqrt(n)
        mean = float(d.mean())
        return Comparison(mean, mean - half, mean + half, n, _verdict(mean - half, mean + half), True)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else a.size + b.size - 2
    half = t.ppf(quantile, dof) * se
    mean = float(a.mean() - b.mean())
    return Comparison(mean, mean - half, mean + half, min(a.size, b.size), _verdict(mean - half, mean + half),
                      False)


def check_verdict(comparison: Comparison, expected: str, what: str = "") -> None:
    """Raise AssertionError unless the measured verdict is the one the prose states."""
    if expected not in (BETTER, WORSE, NOISE):
        raise ValueError(f"expected must be one of {BETTER!r}, {WORSE!r}, {NOISE!r}, got {expected!r}")
    if comparison.verdict != expected:
        raise AssertionError(f"{what + ': ' if what else ''}the text says {expected!r}, the measurement says "
                             f"{comparison}")
