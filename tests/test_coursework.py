"""Coursework 3 (hyperparameters): every grade the solution declares holds on two grader draws.

The declared variants (metadata.traindeep.mistakes) are the shortcuts a student takes: demo-sized sweeps
behind every answer, a search that never extends its first grid, a "step-matched" comparison run at equal
epochs, tables without measured notes or chosen on test, empty or repeated figures. `make verify` vets the
same declarations on 50 draws.
"""

import pytest
from labtools import assert_feedback_names, assert_vetted, vetted


@pytest.fixture(scope="module")
def vetting():
    return vetted("coursework3_hyperparameters")


def test_every_declared_grade_holds_on_two_draws(vetting):
    assert_vetted(vetting)


def test_demo_sized_sweeps_earn_nothing_and_feedback_says_why(vetting):
    assert_feedback_names(vetting, "copies_demo", "✗ notes with measured reasons; test accuracy shown once")
    assert_feedback_names(vetting, "copies_demo", "✗ three or more distinct figures that plot data: got 0")


def test_an_unextended_grid_and_structure_without_content_lose_their_points(vetting):
    assert_feedback_names(vetting, "best_rates_on_the_edge", "✗ every best learning rate lies inside its grid")
    assert_feedback_names(vetting, "structure_only", "✗ notes with measured reasons; test accuracy shown once")
    assert_feedback_names(vetting, "structure_only", "✗ three or more distinct figures that plot data: got 1")


def test_choosing_on_test_empty_notes_a_repeated_figure_and_equal_epochs_each_lose_their_point(vetting):
    assert_feedback_names(vetting, "table_chosen_on_test", "✗ notes with measured reasons; test accuracy shown once")
    assert_feedback_names(vetting, "empty_notes", "✗ notes with measured reasons; test accuracy shown once")
    assert_feedback_names(vetting, "duplicated_plot", "✗ three or more distinct figures that plot data: got 2")
    assert_feedback_names(vetting, "steps_matched_by_epochs", "✗ 3+ batch sizes compared at equal numbers of updates")
