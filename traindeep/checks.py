"""Public self-checks: one readable verdict line each, `AssertionError` on failure.

Used by the chapters (to prove a from-scratch implementation against
PyTorch's) and by the labs (instant feedback for students).
"""

from __future__ import annotations

import math

import numpy as np
import torch

PASS, FAIL = "✓", "✗"


class CheckFailed(AssertionError):
    """A public check did not pass; the message is the verdict line."""


def _verdict(ok: bool, name: str, detail: str, hint: str | None = None) -> None:
    """Print the verdict line; raise on failure. Returns None, so a cell ending in a check shows no `True`."""
    line = f"{PASS if ok else FAIL} {name}: {detail}"
    if not ok and hint:
        line += f" — {hint}"
    print(line)
    if not ok:
        raise CheckFailed(line)


def _as_array(value, name):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise CheckFailed(f"{FAIL} {name}: expected a number, array or tensor, "
                          f"got {type(value).__name__}") from None


def compare(name: str, ours, reference, rtol: float = 1e-5, atol: float = 1e-6,
            hint: str | None = None) -> None:
    """Compare an implementation's output with a reference (shape, then values)."""
    if ours is None:
        return _verdict(False, name, "got None", hint or "did you forget to return a value?")
    a, b = _as_array(ours, name), _as_array(reference, name)
    if a.shape != b.shape:
        return _verdict(False, name, f"shape {a.shape}, expected {b.shape}", hint)
    if not np.isfinite(a).all():
        return _verdict(False, name, "contains NaN or inf", hint)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if diff == 0.0:
        return _verdict(True, name, "exact match")
    ok = bool(np.allclose(a, b, rtol=rtol, atol=atol))
    return _verdict(ok, name, f"max |difference| {diff:.2e}" + (" (within tolerance)" if ok else ""),
                    hint)


def check_std(name: str, tensor, expected: float, rel_tol: float = 0.1, hint: str | None = None) -> None:
    """A sample's standard deviation is within `rel_tol` of `expected`."""
    values = _as_array(tensor, name)
    if values.size < 2:
        return _verdict(False, name, f"expected many values, got {values.size}", hint)
    std = float(values.std())
    ok = math.isfinite(std) and abs(std - expected) <= rel_tol * abs(expected)
    return _verdict(ok, name, f"std {std:.4f}, expected {expected:.4f}", hint)


def check_range(name: str, value, low: float, high: float, hint: str | None = None) -> None:
    """A number lies in [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _verdict(False, name, f"expected a number, got {type(value).__name__}", hint)
    ok = math.isfinite(number) and low <= number <= high
    return _verdict(ok, name, f"{number:.4g}, expected between {low:g} and {high:g}", hint)


def check_true(name: str, condition, detail: str, hint: str | None = None) -> None:
    """A condition the caller computed; `detail` says what was measured."""
    return _verdict(bool(condition), name, detail, hint)
