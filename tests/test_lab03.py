"""Lab 3 (clipping and transfer): every grade the solution declares holds on two draws.

The classic mistakes, delegations and alternatives live beside the solution, in its
`metadata.traindeep.mistakes`; `labs vet` grades each and checks its points per question.
"""

import pytest
from labtools import assert_feedback_names, assert_vetted, vetted


@pytest.fixture(scope="module")
def vetting():
    return vetted("lab03_transfer_and_clipping")


def test_every_declared_grade_holds_on_two_draws(vetting):
    assert_vetted(vetting)


def test_feedback_names_the_forbidden_module(vetting):
    assert_feedback_names(vetting, "delegates_to_torch", "torch.nn.utils")
