"""Lab 2 (activations and batch normalization): every grade the solution declares holds on two draws.

The classic mistakes, delegations and alternatives live beside the solution, in its
`metadata.traindeep.mistakes`; `labs vet` grades each and checks its points per question.
"""

import pytest
from labtools import assert_feedback_names, assert_vetted, vetted


@pytest.fixture(scope="module")
def vetting():
    return vetted("lab02_activations_and_batchnorm")


def test_every_declared_grade_holds_on_two_draws(vetting):
    assert_vetted(vetting)


@pytest.mark.parametrize("variant,words", [
    ("biased_running_var", "UNBIASED batch variance"),
    ("swapped_momentum", "momentum weighs the NEW batch"),
    ("eps_outside_root", "eps goes inside the square root"),
    ("unbiased_normalization", "divide by N, not N - 1"),
    ("zero_entries_not_units", "zero on EVERY input"),
    ("delegates_to_torch_batch_norm", "torch.nn"),
    ("backward_by_autograd", "backward"),
])
def test_feedback_names_the_mistake(vetting, variant, words):
    assert_feedback_names(vetting, variant, words)
