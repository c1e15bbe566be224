"""The book's one noise rule (traindeep.stats) and the grid-edge check (traindeep.sweep.edge_bests)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from traindeep import stats, sweep


def test_paired_interval_matches_the_textbook_formula():
    a = [0.91, 0.93, 0.92, 0.95, 0.90]
    b = [0.90, 0.91, 0.92, 0.93, 0.88]
    c = stats.compare(a, b)
    d = np.subtract(a, b)
    half = scipy_stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert c.diff == pytest.approx(d.mean())
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.n == 5 and c.paired and c.verdict == "better"
    assert stats.compare(b, a).verdict == "worse"


def test_pairing_sees_what_unpaired_hides():
    # The seed moves both arms together; a paired rule sees the constant gain, Welch's drowns it.
    base = np.array([0.80, 0.90, 0.85, 0.95, 0.88])
    a, b = base + 0.01, base
    assert stats.compare(a, b + np.array([0, 0.001, -0.001, 0.0005, 0])).verdict == "better"
    assert stats.compare(a, b, paired=False).verdict == "within the noise"


def test_a_zero_spread_arm_no_longer_makes_a_difference_real():
    # The old rule 2*sqrt((s1^2+s2^2)/n) called +0.6 points "better" when one arm had std 0.
    a = [0.978, 0.978, 0.978]
    b = [0.962, 0.979, 0.975]
    assert stats.compare(a, b).verdict == "within the noise"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one value per seed"):
        stats.compare([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least two seeds"):
        stats.compare([1], [2])
    with pytest.raises(ValueError, match="diverged"):
        stats.compare([1, float("nan")], [1, 2])


def test_describe_and_check_verdict():
    c = stats.compare([0.9, 0.92, 0.91], [0.88, 0.9, 0.9])
    assert c.describe().startswith("+1.7 points [+0.2, +3.1] (95 %, 3 paired seeds)")
    stats.check_verdict(c, "better")
    with pytest.raises(AssertionError, match="the text says 'within the noise'"):
        stats.check_verdict(c, "within the noise", "Adam vs SGD")
    with pytest.raises(ValueError, match="expected must be one of"):
        stats.check_verdict(c, "same")


def _records(best_lr_by_arm):
    grid = (0.01, 0.03, 0.1, 0.3)
    return [{"arm": arm, "lr": lr, "seed": s, "val_acc": 1 - abs(math.log10(lr / best))}
            for arm, best in best_lr_by_arm.items() for lr in grid for s in (0, 1)]


def test_edge_bests_names_the_contenders_on_an_edge():
    records = _records({"inside": 0.03, "top": 0.3, "bottom": 0.01})
    edges = sweep.edge_bests(records, "arm")
    assert len(edges) == 2
    assert any(e.startswith("arm=top: best lr 0.3 is the largest") for e in edges)
    assert any(e.startswith("arm=bottom: best lr 0.01 is the smallest") for e in edges)
    with pytest.raises(AssertionError, match="arm=top"):
        sweep.assert_interior(records, "arm")
    sweep.assert_interior([r for r in records if r["arm"] == "inside"], "arm")


def test_a_two_value_grid_has_no_interior():
    records = [{"arm": "a", "lr": lr, "seed": 0, "val_acc": acc} for lr, acc in ((0.03, 0.5), (0.1, 0.6))]
    assert "only 2 value(s)" in sweep.edge_bests(records, "arm")[0]
