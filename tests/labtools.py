"""Grading a lab's solution and edited copies of it, for the per-lab grader tests."""

import csv

import nbformat

from traindeep.course.grade import grade_batch
from traindeep.course.labformat import is_answer, question_of
from traindeep.course.notebooks import read_notebook


def write_variant(solution, subs, name, question, *edits):
    """Write `subs/name.ipynb`: the solution with the answer cell of `question` edited
    (each `(old, new)` pair in turn; each `old` must be there)."""
    nb = read_notebook(solution)
    (cell,) = [c for c in nb.cells if is_answer(c) and question_of(c) == question]
    for before, after in edits:
        assert before in cell.source, f"the {question} answer no longer contains {before!r}"
        cell.source = cell.source.replace(before, after)
    nbformat.write(nb, subs / f"{name}.ipynb")


def graded_rows(solution, subs, out, seed):
    """Grade every notebook in `subs` (two workers, the default limits) and return {student: row}."""
    assert grade_batch(solution, [subs], out, workers=2, timeout=300, cell_timeout=120, seed=seed)
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}
