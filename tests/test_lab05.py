"""Lab 5 (regularization): the grader rewards the solution and finds the classic mistakes.

Each submission is the solution with one answer cell edited; it must lose the points of the probes
that the mistake breaks, and keep every other question's.
"""

from pathlib import Path

import pytest
from labtools import assert_loses_exactly, assert_unfilled_earns_zero, graded_rows, submissions_folder, write_variant

ROOT = Path(__file__).resolve().parent.parent
LAB05 = ROOT / "solutions" / "lab05_regularization.ipynb"
AUTOMATIC = ("q1", "q2", "q3", "q4", "q5")


@pytest.fixture(scope="module")
def lab05_grades(tmp_path_factory):
    subs = submissions_folder(tmp_path_factory, LAB05)
    # Plain dropout without the 1 / (1 - p) scaling: the mask is right, the values and the mean are not.
    write_variant(LAB05, subs, "no_inverted_scaling", "q1",
                  ("    return x * mask / (1 - p)\n", "    return x * mask\n"))
    # Stops when the count of bad epochs exceeds patience instead of reaching it: one epoch too late.
    write_variant(LAB05, subs, "patience_off_by_one", "q5",
                  ("if self.bad_epochs >= self.patience:", "if self.bad_epochs > self.patience:"))
    # Keeps the live state_dict instead of a copy: "restoring" puts back the last epoch's weights.
    write_variant(LAB05, subs, "restores_last_weights", "q5",
                  ("self.best_state = copy.deepcopy(model.state_dict())", "self.best_state = model.state_dict()"))
    # Puts the biases into the L2 penalty too (the L1 penalty stays right).
    write_variant(LAB05, subs, "l2_includes_biases", "q3",
                  ("    return lam * sum((w ** 2).sum() for w in weights)\n",
                   "    weights += [m.bias for m in model.modules() if isinstance(m, nn.Linear)]\n"
                   "    return lam * sum((w ** 2).sum() for w in weights)\n"))
    # Normalizes the columns of the weight (dim=0) instead of its rows.
    write_variant(LAB05, subs, "max_norm_over_columns", "q4",
                  ("layer.weight.norm(dim=1, keepdim=True)", "layer.weight.norm(dim=0, keepdim=True)"))
    # Shortcut through PyTorch's own dropout.
    write_variant(LAB05, subs, "delegates_to_torch", "q1",
                  ("    if not training or p == 0:\n",
                   "    return torch.nn.functional.dropout(x, p, training)\n    if not training or p == 0:\n"))
    return graded_rows(LAB05, subs, seed=5)


def test_the_solution_earns_full_marks(lab05_grades):
    rows, _ = lab05_grades
    row = rows["solution_itself"]
    assert row["status"] == "ok" and row["total"] == row["max"] == "13" and row["q6"] == "manual", row
    assert [row[q] for q in AUTOMATIC] == ["3", "2", "3", "2", "3"]


def test_the_unfilled_lab_earns_zero_with_answers_missing(lab05_grades):
    assert_unfilled_earns_zero(lab05_grades)


@pytest.mark.parametrize("student,question,kept", [
    ("no_inverted_scaling", "q1", "1"),  # evaluation mode is still right; the values and the mean are not
    ("patience_off_by_one", "q5", "1"),  # both stopping epochs are late; the restored weights are still the best
    ("restores_last_weights", "q5", "2"),  # stops at the right epoch, but hands back the last weights
    ("l2_includes_biases", "q3", "1"),  # the L2 value and its gradients are wrong, the L1 penalty is not
    ("max_norm_over_columns", "q4", "0"),
    ("delegates_to_torch", "q1", "0"),
])
def test_a_mistake_loses_exactly_its_points(lab05_grades, student, question, kept):
    assert_loses_exactly(lab05_grades, student, question, kept, AUTOMATIC)


def test_feedback_names_the_forbidden_function(lab05_grades):
    _, out = lab05_grades
    assert "torch.nn.functional.dropout" in (out / "feedback" / "delegates_to_torch.md").read_text()
