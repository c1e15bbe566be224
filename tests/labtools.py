"""Grading a lab's solution and edited copies of it, for the per-lab grader tests."""

import csv
import shutil
from pathlib import Path

import nbformat

from traindeep.course.grade import grade_batch
from traindeep.course.labformat import is_answer, question_of
from traindeep.course.notebooks import read_notebook

ROOT = Path(__file__).resolve().parent.parent


def submissions_folder(tmp_path_factory, solution):
    """A fresh folder of submissions holding the solution itself and the unfilled lab (from labs/)."""
    subs = tmp_path_factory.mktemp(solution.stem.split("_")[0]) / "submissions"
    subs.mkdir()
    shutil.copy(solution, subs / "solution_itself.ipynb")
    shutil.copy(ROOT / "labs" / solution.name, subs / "unfilled.ipynb")
    return subs


def write_variant(solution, subs, name, question, *edits):
    """Write `subs/name.ipynb`: the solution with the answer cell of `question` edited
    (each `(old, new)` pair in turn; each `old` must be there)."""
    nb = read_notebook(solution)
    (cell,) = [c for c in nb.cells if is_answer(c) and question_of(c) == question]
    for before, after in edits:
        assert before in cell.source, f"the {question} answer no longer contains {before!r}"
        cell.source = cell.source.replace(before, after)
    nbformat.write(nb, subs / f"{name}.ipynb")


def graded_rows(solution, subs, seed):
    """Grade every notebook in `subs` (two workers, the default limits) into the folder beside it;
    return ({student: row}, that folder)."""
    out = subs.parent / "out"
    assert grade_batch(solution, [subs], out, workers=2, timeout=300, cell_timeout=120, seed=seed)
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}, out


def assert_unfilled_earns_zero(grades):
    rows, _ = grades
    assert rows["unfilled"]["total"] == "0" and rows["unfilled"]["status"].startswith("answers missing"), rows


def assert_loses_exactly(grades, student, question, kept, automatic):
    """`student` keeps `kept` points on `question` and the solution's points on every other automatic one."""
    rows, out = grades
    row = rows[student]
    assert row[question] == kept, (row, (out / "feedback" / f"{student}.md").read_text())
    others = {q: row[q] for q in automatic if q != question}
    assert others == {q: rows["solution_itself"][q] for q in others}, "the other questions keep their points"
