import numpy as np
import pytest
import torch

from traindeep import probes, train

STEPS = np.arange(200)
NOISE = np.random.default_rng(0).normal(0, 1, len(STEPS))


def fine():
    return 2.3 * np.exp(-STEPS / 30) + 0.05 + 0.01 * NOISE


def too_small():
    return 2.3 - 0.002 * STEPS + 0.01 * NOISE


def too_large():
    return 1.5 + 0.8 * np.abs(NOISE)


def test_each_case_is_named():
    assert probes.diagnose(fine()).verdict == "fine"
    assert probes.diagnose(too_small()).verdict == "too small"
    assert probes.diagnose(too_small()).case == "A"
    assert probes.diagnose(too_large()).verdict == "too large"
    assert probes.diagnose(too_large()).case == "B"
    diverged = list(fine()[:50]) + [float("nan")]
    assert probes.diagnose(diverged).verdict == "diverged"
    assert probes.diagnose(diverged).case == "C"


def test_exploding_without_nan_is_diverged():
    exploding = 2.3 * np.exp(STEPS / 40)
    result = probes.diagnose(exploding)
    assert result.verdict == "diverged" and "exploded" in result.reason


def test_loss_that_falls_then_climbs_back_is_too_large():
    curve = np.concatenate([np.linspace(2.3, 0.5, 100), np.linspace(0.5, 1.8, 100)])
    assert probes.diagnose(curve).verdict == "too large"


def test_edge_cases():
    assert probes.diagnose([float("nan")]).verdict == "diverged"
    assert probes.diagnose([float("inf"), 1.0, 1.0, 1.0, 1.0]).reason.startswith("the loss became inf at step 0")
    constant = probes.diagnose([2.3] * 50)
    assert constant.verdict == "too small" and "0%" in constant.reason
    with pytest.raises(ValueError, match="at least 5 losses"):
        probes.diagnose([2.3, 1.0, 0.5])
    with pytest.raises(ValueError, match="empty"):
        probes.diagnose([])
    with pytest.raises(TypeError, match="sequence of losses"):
        probes.diagnose(["a", "b"])


def test_accepts_histories_and_tensors():
    history = train.History(train_loss=list(fine()[::20]), step_loss=list(too_small()))
    assert probes.diagnose(history).verdict == "too small"  # per-step losses win when recorded
    epochs_only = train.History(train_loss=list(fine()[::20]))
    assert probes.diagnose(epochs_only).verdict == "fine"
    stopped = train.History(train_loss=[2.3, 2.0])
    stopped.mark_diverged()
    assert probes.diagnose(stopped).verdict == "diverged"
    assert probes.diagnose(torch.tensor(too_large())).verdict == "too large"


def test_summary_line_names_the_case():
    text = str(probes.diagnose(too_small()))
    assert text.startswith("too small (case A): the loss fell by only")
    assert str(probes.diagnose(fine())).startswith("fine: ")


def test_thresholds_move_the_verdict():
    slow = too_small()  # falls by about 17% of its start
    assert probes.diagnose(slow, min_drop=0.1).verdict == "fine"
    assert probes.diagnose(slow, steady=1.01).verdict == "too large"  # no line explains more than all of it
    assert probes.diagnose(fine(), noise=0.001).verdict == "too large"


def test_a_spike_on_the_way_is_too_large():
    spiky = fine()
    spiky[40] = 10.0
    result = probes.diagnose(spiky)
    assert result.verdict == "too large" and "spiked to 10" in result.reason and "step 40" in result.reason


def test_a_flat_noisy_loss_wanders():
    result = probes.diagnose(too_large())
    assert "wanders without progress" in result.reason


def test_a_blow_up_that_never_recovers_is_too_large():
    # The first steps throw the loss to 1e4; it comes back down only to where it started (a network
    # whose units the blow-up killed): the pieces' medians fall a lot, yet nothing was learnt.
    dead = np.concatenate([[2.3], 1e4 * np.exp(-np.arange(1, 20) / 3) + 2.4, 2.35 + 0.05 * np.abs(NOISE[:180])])
    result = probes.diagnose(dead)
    assert result.verdict == "too large" and result.case == "B", result
    assert "never recovered" in result.reason and "step 1" in result.reason
    # The same blow-up followed by real learning is not flagged by this rule.
    recovered = dead.copy()
    recovered[20:] = 2.3 * np.exp(-STEPS[:180] / 30) + 0.05
    assert "never recovered" not in probes.diagnose(recovered).reason
