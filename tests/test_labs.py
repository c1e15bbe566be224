"""Labs generated from solutions: in sync, free of solutions, checks that fail on the stubs, real grading."""

import shutil
from pathlib import Path

import pytest
from nbclient import NotebookClient

from traindeep.course import labs
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
