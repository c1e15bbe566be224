"""Lab 1 (signal propagation): every grade the solution declares holds on two draws.

The classic mistakes, delegations and alternatives live beside the solution, in its
`metadata.traindeep.mistakes`; `labs vet` grades each and checks its points per question.
"""

import pytest
from labtools import assert_feedback_names, assert_vetted, vetted


@pytest.fixture(scope="module")
def vetting():
    return vetted("lab01_signal_propagation")


def test_every_declared_grade_holds_on_two_draws(vetting):
    assert_vetted(vetting)


@pytest.mark.parametrize("variant,words", [
    ("delegates_to_torch_init", "torch.nn.init"),
    ("delegates_to_layer_stats", "traindeep.probes"),
    ("identity_repair", "activation must be one of"),
    ("swapped_fans", "did you use fan_out?"),
])
def test_feedback_names_the_mistake(vetting, variant, words):
    assert_feedback_names(vetting, variant, words)
