"""Labs generated from solutions: in sync, free of solutions, checks that fail on the stubs, real grading."""

import csv
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from traindeep.course import labs
from traindeep.course.grade import grade_batch
from traindeep.course.labformat import forbidden_uses, is_answer, is_check, questions
from traindeep.course.notebooks import read_notebook

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LAB01 = ROOT / "solutions" / "lab01_signal_propagation.ipynb"


def test_labs_folder_is_in_sync_with_solutions():
    assert SOLUTIONS, "no solutions/*.ipynb"
    assert labs.stale_labs(ROOT) == []


def test_build_is_byte_identical_and_stale_labs_are_found(tmp_path):
    shutil.copy(ROOT / "_config.yml", tmp_path)
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    first = {p.name: p.read_bytes() for p in labs.build_labs(tmp_path)}
    second = {p.name: p.read_bytes() for p in labs.build_labs(tmp_path)}
    assert first == second and labs.stale_labs(tmp_path) == []
    edited = tmp_path / "labs" / LAB01.name
    edited.write_text(edited.read_text().replace("YOUR CODE HERE", "my answer"))
    (tmp_path / "labs" / "orphan.ipynb").write_text("{}")
    assert labs.stale_labs(tmp_path) == [LAB01.name, "orphan.ipynb (no solution)"]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_a_lab_holds_no_solution(solution):
    lab = read_notebook(ROOT / "labs" / solution.name)
    text = (ROOT / "labs" / solution.name).read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "traindeep" not in lab.metadata, "probes and rubrics must stay in the solution"
    assert f"Generated from solutions/{solution.name}" in lab.cells[0].source
    assert f"blob/colab/labs/{solution.name}" in lab.cells[0].source
    answers = [c for c in lab.cells if is_answer(c)]
    assert len(answers) == len([c for c in read_notebook(solution).cells if is_answer(c)])
    assert all("YOUR CODE HERE" in c.source or "Your answer here" in c.source for c in answers)
    assert len([q for q in questions(read_notebook(solution)) if not q.manual]) >= 3


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_public_check_fails_on_the_unfilled_stub(solution, tmp_path):
    lab = read_notebook(ROOT / "labs" / solution.name)
    client = NotebookClient(lab, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    check_cells = [c for c in lab.cells if is_check(c)]
    assert check_cells
    for cell in check_cells:
        text = "".join(o.get("text", "") for o in cell.outputs)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors, f"check cell {cell.id} passed on the stub"
        assert "✓" not in text, f"check cell {cell.id} printed a passing check on the stub: {text}"


@pytest.mark.parametrize("answer,context,found", [
    ("torch.nn.init.xavier_uniform_(w)", (), ["torch.nn.init"]),
    ("nn.init.kaiming_normal_(w)", (), ["torch.nn.init"]),
    ("from torch.nn import init as i\ni.normal_(w)", (), ["torch.nn.init"]),
    ("probes.layer_stats(model, x)", ("from traindeep import checks, probes",), ["traindeep.probes"]),
    ("p.layer_stats(model, x)", ("import traindeep.probes as p",), ["traindeep.probes"]),
    ("layer_stats(model, x)", ("from traindeep.probes import layer_stats",), ["traindeep.probes"]),
    ("w.normal_(0, 0.1)  # torch.nn.init in a comment", (), []),
    ("checks.compare('x', 1, 1)", ("from traindeep import checks, probes",), []),
])
def test_forbidden_uses_follow_the_helpers_imports(answer, context, found):
    assert forbidden_uses(answer, ["torch.nn.init", "traindeep.probes"], context) == found


def test_source_checks_parse_one_thread_at_a_time(monkeypatch):
    # Grading threads parse answers concurrently; CPython 3.11's ast.parse is not safe for that (a
    # submission once became "grader error: SystemError: AST constructor recursion depth mismatch").
    import ast

    from traindeep.course import labformat

    held, real_parse = [], ast.parse

    def spy(*args, **kwargs):
        lock = getattr(labformat, "_PARSE_LOCK", None)
        held.append(lock is not None and lock.locked())
        return real_parse(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(ast, "parse", spy)
        found = forbidden_uses("import torch\ntorch.nn.init.zeros_(w)", ["torch.nn.init"], ["import torch"])
    assert found == ["torch.nn.init"]
    assert held == [True, True]  # the helper cell and the answer, each parsed under the lock


SHORT_SWEEPS = """
lr_results = sweep.sweep(train_one, {"lr": [1e-4, 1e-2, 3.0], "momentum": [0.0, 0.9]}, seeds=(0, 1),
                         fixed={"epochs": 3}, progress=False)
batch_results = sweep.sweep(train_one, {"batch_size": [8, 64, 512], "lr": [0.01, 0.1, 1.0]}, seeds=(0, 1),
                            fixed={"epochs": 3}, progress=False)
width_results = sweep.sweep(train_one, {"width": [8, 64, 512], "lr": [0.01, 0.1, 1.0]}, seeds=(0, 1),
                            fixed={"epochs": 3}, progress=False)
"""


@pytest.mark.skip(reason="known gap, open in issue 24: the q3 notes probe passes on tables built from the demo "
                         "sweeps, so copies_demo keeps 1 point; the coursework's grades are vetted by its declared "
                         "mistakes (labs vet) until the probe is fixed")
def test_coursework_solution_earns_full_marks_and_shortcuts_earn_nothing(tmp_path):
    solution = ROOT / "solutions" / "coursework3_hyperparameters.ipynb"
    subs = tmp_path / "submissions"
    subs.mkdir()
    shutil.copy(solution, subs / "solution_itself.ipynb")
    shutil.copy(ROOT / "labs" / solution.name, subs / "unfilled.ipynb")

    def variant(name, answers):
        nb = read_notebook(solution)
        for cell in nb.cells:
            if cell.get("id") in answers:
                cell.source = answers[cell.id]
        nbformat.write(nb, subs / f"{name}.ipynb")

    # Demo-sized sweeps (two seeds, three epochs) behind every answer, and no figures.
    variant("copies_demo", {"q1-answer": SHORT_SWEEPS, "q2-answer": "", "q2-width-answer": "",
                            "q4-answer": "figures = []"})
    # A search that never extends its first grid (the large batches' best rate stays on its edge), and three
    # empty figures.
    answers = {c.get("id"): c.source for c in read_notebook(solution).cells}
    assert "max_rounds=3" in answers["q2-answer"]
    variant("shortcuts", {"q2-answer": answers["q2-answer"].replace("max_rounds=3", "max_rounds=0"),
                          "q4-answer": "figures = [plt.figure() for _ in range(3)]\nplt.show()"})
    # Tables that show every test accuracy and leave the notes empty; one figure appended three times.
    assert "test_for=lambda row: row is chosen" in answers["q3-answer"]
    variant("structure_only", {
        "q3-answer": answers["q3-answer"].replace("test_for=lambda row: row is chosen", "test_for=None")
                                        .replace("notes=lambda row: note(row, rows)", "notes=None"),
        "q4-answer": answers["q4-answer"] + "\nfigures = [figures[0]] * 3"})
    # The coursework's own cell limit (300 s, raised in its metadata): its sweeps are the longest cells.
    assert grade_batch(solution, [subs], tmp_path / "out", workers=2, timeout=900, seed=5)
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["solution_itself"]["total"] == rows["solution_itself"]["max"] == "15"
    assert rows["solution_itself"]["q5"] == rows["solution_itself"]["q6"] == rows["solution_itself"]["q7"] == "manual"
    assert rows["unfilled"]["total"] == "0" and rows["unfilled"]["status"].startswith("answers missing")
    assert rows["copies_demo"]["total"] == "0", rows["copies_demo"]
    shortcuts = rows["shortcuts"]
    assert (shortcuts["q1"], shortcuts["q2"], shortcuts["q3"], shortcuts["q4"]) == ("4", "3", "4", "0"), shortcuts
    feedback = (tmp_path / "out" / "feedback" / "shortcuts.md").read_text()
    assert "✗ every best learning rate lies inside its grid" in feedback
    assert "✗ three or more distinct figures that plot data: got 0" in feedback
    # Structure without content: the format passes, the content probes do not.
    structure = rows["structure_only"]
    assert (structure["q1"], structure["q2"], structure["q3"], structure["q4"]) == ("4", "4", "3", "1"), structure
    feedback = (tmp_path / "out" / "feedback" / "structure_only.md").read_text()
    assert "✗ notes with measured reasons; test accuracy shown once" in feedback
    assert "✗ three or more distinct figures that plot data: got 1" in feedback
