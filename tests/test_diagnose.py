import math

import numpy as np
import pytest
import torch

from traindeep import probes, train
from traindeep.widgets import lr as lr_explorer

STEPS = np.arange(200)
NOISE = np.random.default_rng(0).normal(0, 1, len(STEPS))


def fine():
    return 2.3 * np.exp(-STEPS / 30) + 0.05 + 0.01 * NOISE


def too_small():
    return 2.3 - 0.002 * STEPS + 0.01 * NOISE


def too_large():
    # From the untrained network's loss straight to a noisy plateau that never falls further.
    return np.concatenate([[2.3], 1.5 + 1.2 * np.abs(NOISE[1:])])


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
    curve = np.concatenate([np.linspace(2.3, 0.1, 100), np.linspace(0.1, 1.0, 100)])
    assert probes.diagnose(curve).verdict == "too large"
    # Climbing back to where it started undid everything: the rate killed the network.
    dead = np.concatenate([np.linspace(2.3, 0.5, 100), np.linspace(0.5, 2.3, 100)])
    result = probes.diagnose(dead)
    assert result.case == "B" and "undid what was learnt" in result.reason, result


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
    # No line explains more than all of it; with a small `rise` the loss counts as having moved.
    assert probes.diagnose(slow, steady=1.01, rise=0.1).verdict == "too large"
    assert probes.diagnose(slow, steady=1.01).verdict == "too small"  # it hardly moved: still case A
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
    # The same blow-up followed by real learning is case B too (it spiked, whatever followed).
    recovered = dead.copy()
    recovered[20:] = 2.3 * np.exp(-STEPS[:180] / 30) + 0.05
    result = probes.diagnose(recovered)
    assert result.case == "B" and "spiked" in result.reason and "never recovered" not in result.reason, result


def test_the_start_is_the_initial_loss_not_an_inflated_median():
    # A blow-up to 939 in the first tenth once inflated the "start" so much that the run read "fine".
    curve = 0.6 + 1.7 * np.exp(-STEPS / 40) + 0.02 * NOISE
    curve[0], curve[1:4] = 2.3, [939.0, 300.0, 80.0]
    assert probes.diagnose(curve).case == "B"


# -- the learning-rate explorer's grid, as a labelled set ------------------------------------------
ORDER = {"A": 0, "": 1, "B": 2, "C": 3}  # the letters in the order a growing rate should reach them


@pytest.fixture(scope="module")
def labelled_grid():
    """The explorer's whole grid (every optimizer, β, schedule and rate: 351 networks, trained in
    stacks in seconds), grouped in rows of rates; each run carries its row's best rate (by final
    validation accuracy) as its label. Plain SGD has no β: its rows appear once per β, identical."""
    grid = lr_explorer.network_runs()
    rows = {}
    for (optimizer, rate, beta, schedule), run in grid.items():
        rows.setdefault((optimizer, beta, schedule), []).append((rate, run))
    labelled = {}
    for row, runs in rows.items():
        runs.sort(key=lambda pair: pair[0])
        accuracy = [run.val_acc[-1] if run.val_acc and math.isfinite(run.val_acc[-1]) else -1 for _, run in runs]
        best = runs[int(np.argmax(accuracy))][0]
        labelled[row] = [(rate, best, run, probes.diagnose(run.step_loss)) for rate, run in runs]
    return labelled


def test_the_grid_covers_every_optimizer_schedule_and_rate(labelled_grid):
    assert len(labelled_grid) == len(lr_explorer.OPTIMIZERS) * len(lr_explorer.BETAS) * len(lr_explorer.SCHEDULES)
    assert all(len(runs) == len(lr_explorer.RATES) for runs in labelled_grid.values())


def test_no_run_above_its_best_rate_is_called_too_small(labelled_grid):
    wrong = [(row, rate, str(found)) for row, runs in labelled_grid.items()
             for rate, best, _, found in runs if rate > best and found.case == "A"]
    assert not wrong


def test_no_run_that_spiked_is_called_fine(labelled_grid):
    wrong = [(row, rate, str(found)) for row, runs in labelled_grid.items() for rate, _, run, found in runs
             if found.case == "" and np.nanmax(np.array(run.step_loss)) > 10 * run.step_loss[0]]
    assert not wrong


def test_the_letters_never_go_back_as_the_rate_grows(labelled_grid):
    for row, runs in labelled_grid.items():
        letters = [found.case for _, _, _, found in runs]
        assert all(ORDER[a] <= ORDER[b] for a, b in zip(letters, letters[1:])), (row, letters)


def test_rates_far_from_the_best_get_their_letters(labelled_grid):
    # Ten times the best rate or more is never "fine" nor "too small" on this grid; a tenth or less
    # is never B or C. (Near the best, any letter but A can be right.)
    for row, runs in labelled_grid.items():
        for rate, best, _, found in runs:
            if rate >= 10 * best * (1 - 1e-9):
                assert found.case in ("B", "C", ""), (row, rate, str(found))
            if rate <= best / 10 * (1 + 1e-9):
                assert found.case in ("A", ""), (row, rate, str(found))
