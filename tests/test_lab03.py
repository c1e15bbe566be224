"""Lab 3 (clipping and transfer): the grader rewards the solution and finds the classic mistakes.

Each submission is the solution with one answer cell edited; it must lose the points of the probes
that the mistake breaks, and keep every other question's.
"""

from pathlib import Path

import pytest
from labtools import assert_loses_exactly, assert_unfilled_earns_zero, graded_rows, submissions_folder, write_variant

ROOT = Path(__file__).resolve().parent.parent
LAB03 = ROOT / "solutions" / "lab03_transfer_and_clipping.ipynb"
AUTOMATIC = ("q1", "q2", "q3", "q4")



@pytest.fixture(scope="module")
def lab03_grades(tmp_path_factory):
    subs = submissions_folder(tmp_path_factory, LAB03)
    # Returns the norm after clipping instead of before: the gradients are right, the logged norm is not.
    write_variant(LAB03, subs, "returns_clipped_norm", "q1",
                  ("    return total\n", "    return min(total, max_norm)\n"))
    # Scales every time, even below the threshold: wrong whenever the norm is already small.
    write_variant(LAB03, subs, "always_scales", "q1", ("    if coef < 1.0:\n", "    if True:\n"))
    # Freezes the first n modules but never unfreezes the others.
    write_variant(LAB03, subs, "never_unfreezes", "q2", ("parameter.requires_grad_(index >= n)",
                                             "parameter.requires_grad_(False) if index < n else None"))
    # Shares A's modules instead of copying them: training B would change A.
    write_variant(LAB03, subs, "shares_modules", "q3", ("copy.deepcopy(module) for module", "module for module"))
    # No transfer at all: a linear head on the raw pixels.
    write_variant(LAB03, subs, "no_reuse", "q4", ('transfer_recipe = candidates["reuse 2, then fine-tune"]',
                                      'transfer_recipe = candidates["scratch-like (k=0, linear head on pixels)"]'))
    # Shortcut through PyTorch's own clipping.
    write_variant(LAB03, subs, "delegates_to_torch", "q1",
             ("    if norm_type == math.inf:\n",
              "    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]\n"
              "    for p, g in zip(params, grads):\n"
              "        p.grad = g\n"
              "    return torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type).item()\n"
              "    if norm_type == math.inf:\n"))
    return graded_rows(LAB03, subs, seed=5)


def test_the_solution_earns_full_marks(lab03_grades):
    rows, _ = lab03_grades
    row = rows["solution_itself"]
    assert row["status"] == "ok" and row["total"] == row["max"] == "10" and row["q5"] == "manual", row
    assert [row[q] for q in AUTOMATIC] == ["3", "2", "3", "2"]


def test_the_unfilled_lab_earns_zero_with_answers_missing(lab03_grades):
    assert_unfilled_earns_zero(lab03_grades)


@pytest.mark.parametrize("student,question,kept", [
    ("returns_clipped_norm", "q1", "1"),  # the clipped gradients (both thresholds) are still right
    ("always_scales", "q1", "2"),  # only the below-threshold half of one probe breaks
    ("never_unfreezes", "q2", "1"),  # a fresh network is right; re-freezing with a smaller n is not
    ("shares_modules", "q3", "2"),  # structure and weights look right, but B's training changes A
    ("no_reuse", "q4", "0"),
    ("delegates_to_torch", "q1", "0"),
])
def test_a_mistake_loses_exactly_its_points(lab03_grades, student, question, kept):
    assert_loses_exactly(lab03_grades, student, question, kept, AUTOMATIC)


def test_feedback_names_the_forbidden_module(lab03_grades):
    _, out = lab03_grades
    assert "torch.nn.utils" in (out / "feedback" / "delegates_to_torch.md").read_text()
