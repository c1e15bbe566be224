"""Lab 4 (optimizers and schedules): the grader rewards the solution and finds the classic mistakes.

Each submission is the solution with one answer cell edited; it must lose the points of the probes
that the mistake breaks, and keep every other question's.
"""

from pathlib import Path

import pytest
from labtools import assert_loses_exactly, assert_unfilled_earns_zero, graded_rows, submissions_folder, write_variant

ROOT = Path(__file__).resolve().parent.parent
LAB04 = ROOT / "solutions" / "lab04_optimizers_and_schedules.ipynb"
AUTOMATIC = ("q1", "q2", "q3", "q4", "q5", "q6", "q7")
FULL = {"q1": "2", "q2": "2", "q3": "3", "q4": "3", "q5": "3", "q6": "2", "q7": "2"}


@pytest.fixture(scope="module")
def lab04_grades(tmp_path_factory):
    subs = submissions_folder(tmp_path_factory, LAB04)
    # Adam without bias correction: every step is off, the first one by a factor of about 3.
    write_variant(LAB04, subs, "no_bias_correction", "q3",
                  ("m_hat = m / (1 - beta1 ** t)", "m_hat = m"), ("v_hat = v / (1 - beta2 ** t)", "v_hat = v"))
    # AdamW with the decay coupled to the gradient (Adam with L2): right only when weight_decay is 0.
    write_variant(LAB04, subs, "coupled_weight_decay", "q4",
                  ("            p.mul_(1 - lr * weight_decay)\n", "            g = g + weight_decay * p\n"))
    # Warmup off by one: the first update gets a learning rate of 0; the cosine phase is still right.
    write_variant(LAB04, subs, "warmup_off_by_one", "q5",
                  ("peak_lr * (step + 1) / warmup_steps", "peak_lr * step / warmup_steps"))
    # The schedule asked once per epoch instead of once per batch.
    write_variant(LAB04, subs, "stepped_per_epoch", "q7", ("lr = lr_at(step)", "lr = lr_at(epoch)"))
    # Momentum with the gradient damped by (1 - beta): the first step (buffer = gradient) is still right.
    write_variant(LAB04, subs, "damped_momentum", "q1",
                  ("buf.mul_(beta).add_(g)", "buf.mul_(beta).add_((1 - beta) * g)"))
    # Shortcut through PyTorch's own optimizer.
    write_variant(LAB04, subs, "delegates_to_torch", "q2",
                  ("    with torch.no_grad():\n",
                   "    opt = state.setdefault('opt', torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps))\n"
                   "    for p, g in zip(params, grads):\n"
                   "        p.grad = g\n"
                   "    opt.step()\n"
                   "    return\n"
                   "    with torch.no_grad():\n"))
    return graded_rows(LAB04, subs, seed=7)


def test_the_solution_earns_full_marks(lab04_grades):
    rows, _ = lab04_grades
    row = rows["solution_itself"]
    assert row["status"] == "ok" and row["total"] == row["max"] == "17" and row["q8"] == "manual", row
    assert {q: row[q] for q in AUTOMATIC} == FULL


def test_the_unfilled_lab_earns_zero_with_answers_missing(lab04_grades):
    assert_unfilled_earns_zero(lab04_grades)


@pytest.mark.parametrize("student,question,kept", [
    ("no_bias_correction", "q3", "0"),  # all of Adam's points; AdamW is self-contained and keeps its own
    ("coupled_weight_decay", "q4", "1"),  # only the weight_decay=0 probe survives
    ("warmup_off_by_one", "q5", "2"),  # the warmup steps break, both cosine probes hold
    ("stepped_per_epoch", "q7", "0"),  # wrong learning rates, hence wrong weights
    ("damped_momentum", "q1", "1"),  # the first step is right, later ones are too short
    ("delegates_to_torch", "q2", "0"),
])
def test_a_mistake_loses_exactly_its_points(lab04_grades, student, question, kept):
    assert_loses_exactly(lab04_grades, student, question, kept, AUTOMATIC)


def test_feedback_names_the_forbidden_module(lab04_grades):
    _, out = lab04_grades
    assert "torch.optim" in (out / "feedback" / "delegates_to_torch.md").read_text()
