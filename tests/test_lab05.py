"""Lab 5 (regularization): every grade the solution declares holds on two draws.

The classic mistakes, delegations and alternatives live beside the solution, in its
`metadata.traindeep.mistakes`; `labs vet` grades each and checks its points per question.
"""

import re

import pytest
from labtools import assert_feedback_names, assert_vetted, vetted


@pytest.fixture(scope="module")
def vetting():
    return vetted("lab05_regularization")


def test_every_declared_grade_holds_on_two_draws(vetting):
    assert_vetted(vetting)


def test_feedback_names_the_forbidden_function(vetting):
    assert_feedback_names(vetting, "delegates_to_torch", "torch.nn.functional.dropout")


def test_feedback_on_the_mc_measurement_shows_the_value_it_expected(vetting):
    # Question 8's probes draw their inputs, so a failed one shows what it expected (it gives nothing away).
    for variant in ("mc_forgets_train_mode", "mc_averages_log_probabilities"):
        feedback = vetting.feedback[variant]
        assert "✓ evaluation-mode NLL" in feedback, feedback
        assert re.search(r"✗ MC dropout NLL: got -?[0-9.e+-]+, expected -?[0-9.e+-]+ \[0/1\]", feedback), feedback
