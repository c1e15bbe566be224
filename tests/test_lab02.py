"""Lab 2 (activations and batch normalization): the grader rewards the solution and finds the classic mistakes.

Each submission is the solution with one answer cell edited; it must lose exactly the points of the
probes that the mistake breaks, and keep every other question's.
"""

from pathlib import Path

import pytest
from labtools import assert_loses_exactly, assert_unfilled_earns_zero, graded_rows, submissions_folder, write_variant

ROOT = Path(__file__).resolve().parent.parent
LAB02 = ROOT / "solutions" / "lab02_activations_and_batchnorm.ipynb"
AUTOMATIC = ("q1", "q2", "q3", "q4", "q5", "q6")



@pytest.fixture(scope="module")
def lab02_grades(tmp_path_factory):
    subs = submissions_folder(tmp_path_factory, LAB02)
    # The classic mistakes, one per submission.
    write_variant(LAB02, subs, "biased_running_var", "q4",
             ("((x - batch_mean) ** 2).sum(dim=0) / (n - 1)", "((x - batch_mean) ** 2).sum(dim=0) / n"))
    write_variant(LAB02, subs, "swapped_momentum", "q4",
             ("(1 - momentum) * running_mean + momentum * batch_mean",
              "momentum * running_mean + (1 - momentum) * batch_mean"),
             ("(1 - momentum) * running_var + momentum * batch_var",
              "momentum * running_var + (1 - momentum) * batch_var"))
    write_variant(LAB02, subs, "eps_outside_root", "q3", ("torch.sqrt(var + eps)", "(torch.sqrt(var) + eps)"),
             ("torch.sqrt(running_var + eps)", "(torch.sqrt(running_var) + eps)"))
    write_variant(LAB02, subs, "zero_entries_not_units", "q6",
             ("(x == 0).all(dim=0).float().mean()", "(x == 0).float().mean()"))
    # Shortcuts through PyTorch's own operations.
    write_variant(LAB02, subs, "delegates_to_torch_batch_norm", "q3",
             ("return gamma * (x - mean) / torch.sqrt(var + eps) + beta",
              "return torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)"))
    write_variant(LAB02, subs, "backward_by_autograd", "q5",
             ("    mean = x.mean(dim=0)\n",
              "    x = x.clone().requires_grad_(True)\n"
              "    out = gamma * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)\n"
              "    out.backward(dout)\n"
              "    auto_dx = x.grad\n"
              "    x = x.detach()\n"
              "    mean = x.mean(dim=0)\n"),
             ("return dx, dgamma, dbeta", "return auto_dx, dgamma, dbeta"))
    return graded_rows(LAB02, subs, seed=4)


def test_the_solution_earns_full_marks(lab02_grades):
    rows, _ = lab02_grades
    row = rows["solution_itself"]
    assert row["status"] == "ok" and row["total"] == row["max"] == "18" and row["q7"] == "manual", row
    assert [row[q] for q in AUTOMATIC] == ["3", "3", "3", "3", "4", "2"]


def test_the_unfilled_lab_earns_zero_with_answers_missing(lab02_grades):
    assert_unfilled_earns_zero(lab02_grades)


@pytest.mark.parametrize("student,question,kept", [
    ("biased_running_var", "q4", "1"),  # only the running mean survives; both running-variance probes fail
    ("swapped_momentum", "q4", "0"),  # every running statistic is wrong
    ("eps_outside_root", "q3", "0"),  # wrong by ~eps/std even at eps = 1e-5, beyond the probes' rtol 1e-6
    ("zero_entries_not_units", "q6", "0"),
    ("delegates_to_torch_batch_norm", "q3", "0"),
    ("backward_by_autograd", "q5", "0"),
])
def test_a_mistake_loses_exactly_its_points(lab02_grades, student, question, kept):
    assert_loses_exactly(lab02_grades, student, question, kept, AUTOMATIC)


@pytest.mark.parametrize("student,words", [
    ("biased_running_var", "UNBIASED batch variance"),
    ("swapped_momentum", "momentum weighs the NEW batch"),
    ("eps_outside_root", "eps goes inside the square root"),
    ("zero_entries_not_units", "zero on EVERY input"),
    ("delegates_to_torch_batch_norm", "torch.nn"),
    ("backward_by_autograd", "backward"),
])
def test_feedback_names_the_mistake(lab02_grades, student, words):
    _, out = lab02_grades
    assert words in (out / "feedback" / f"{student}.md").read_text()
