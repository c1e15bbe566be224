"""Generate the student labs (`labs/`) from the solutions (`solutions/`), the single source."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from .labformat import is_answer, questions, stub_source
from .notebooks import BADGE_ID, ROOT, notebook_text, read_notebook, repository, stamped

GENERATED = ("<!-- Generated from {source} by `python -m traindeep labs build`. "
             "Edit the solution, then rebuild; changes made here are overwritten. -->")


def lab_from_solution(nb, lab_path: str, solution_path: str, repo=None):
    """The student version of a solution notebook (a new object; `nb` is untouched)."""
    questions(nb)  # validates the format before anything is written
    lab = nbformat.from_dict(json.loads(json.dumps(nb)))
    lab.metadata.pop("traindeep", None)  # questions, probes and rubrics stay with the instructor
    for cell in lab.cells:
        if is_answer(cell):
            cell.source = stub_source(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    lab = stamped(lab, lab_path, repo)
    badge = lab.cells[0]
    assert badge.id == BADGE_ID
    badge.source = GENERATED.format(source=solution_path) + "\n" + badge.source
    return lab


def expected_labs(root=ROOT) -> dict[Path, str]:
    """What `labs/` should hold: path -> file text."""
    root = Path(root)
    repo = repository(root / "_config.yml")
    result = {}
    for solution in sorted((root / "solutions").glob("*.ipynb")):
        lab_path = f"labs/{solution.name}"
        lab = lab_from_solution(read_notebook(solution), lab_path, f"solutions/{solution.name}", repo)
        result[root / lab_path] = notebook_text(lab)
    return result


def build_labs(root=ROOT) -> list[Path]:
    expected = expected_labs(root)
    (Path(root) / "labs").mkdir(exist_ok=True)
    for path, text in expected.items():
        path.write_text(text, encoding="utf-8")
    return list(expected)


def stale_labs(root=ROOT) -> list[str]:
    """Labs that differ from what their solutions generate, are missing, or have no solution."""
    root = Path(root)
    expected = expected_labs(root)
    stale = [p.name for p, text in expected.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    stale += [p.name + " (no solution)" for p in sorted((root / "labs").glob("*.ipynb")) if p not in expected]
    return stale
