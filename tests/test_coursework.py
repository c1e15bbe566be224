"""Coursework 3 (hyperparameters): every grade the solution declares holds on two grader draws.

The declared variants (metadata.traindeep.mistakes) are the shortcuts a student takes: demo-sized sweeps
behind every answer, a search that never extends its first grid, tables without measured notes, empty or
repeated figures. `make verify` vets the same declarations on 50 draws.
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
