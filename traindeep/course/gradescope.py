"""A Gradescope autograder for one lab: the zip Gradescope builds its image from, and what runs per submission.

`build(solution, "autograder.zip")` writes, in Gradescope's documented layout:

    setup.sh          run once when Gradescope builds the image: Python, bubblewrap, the pinned
                      grading requirements and this package, in /opt/traindeep/venv
    run_autograder    run for every submission: `python -m traindeep.course.gradescope /autograder`
    requirements.txt  the pins of what grading imports, taken from this project's requirements.txt
    autograder.json   the lab's file name and the grader's limits
    solution/NAME.ipynb, package/  the solution (never shown to students) and the package's source

`run(root)` grades the notebook in ROOT/submission against the packed solution
and writes ROOT/results/results.json: one test per question (its score and
its public feedback, visible), the hidden probes' details of that question as
a separate entry shown only after the due date, hand-marked questions at 0
of their points with a note, and the top-level score, execution time and
output. The root is /autograder unless TRAINDEEP_AUTOGRADER_ROOT says
otherwise (the tests grade in a temporary tree).

Isolation. Gradescope runs each submission in a container of its own, so no
other student's work or result is within reach. Inside it, the grader uses
the bubblewrap sandbox when bubblewrap can create namespaces there; when it
cannot (Docker's default seccomp profile forbids them), it grades without the
sandbox and says so in the output, rather than refusing: what the container
already isolates is enough to give every student their own row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

from .labformat import questions
from .notebooks import read_notebook

ROOT = Path(__file__).resolve().parents[2]  # the repository (its requirements.txt and pyproject.toml)
PACKAGE = Path(__file__).resolve().parents[1]
VENV = "/opt/traindeep/venv"
UNPINNED = {"pip", "setuptools", "wheel"}  # pip freeze never lists them; pip resolves them itself
# What results.json may say about a question's feedback before the due date: the student's own public
# checks and errors. Every other line (probe verdicts, drawn inputs, expected values) waits for the due date.
VISIBLE = ("- public check:", "- error in your", "Not answered.", "This question asks you", "Marked by hand")
QUESTION_HEADER = re.compile(r"^## (\S+?): ")
POINTS_LINE = re.compile(r"^\*\*[\d.eE+-]+ / [\d.eE+-]+ points\*\*$")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu 22.04 or 24.04).
set -euo pipefail
SOURCE=/autograder/source
apt-get update
# The pins need Python 3.11 or newer: 22.04's python3 is 3.10, so it gets 3.11 next to it.
PY=$(command -v python3.13 || command -v python3.12 || command -v python3.11 || true)
if [ -z "$PY" ]; then
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PY=python3.11
fi
apt-get install -y --no-install-recommends "$(basename "$PY")-venv" bubblewrap util-linux
"$PY" -m venv {venv}
{venv}/bin/pip install --upgrade pip
# CPU wheels of torch: Gradescope's graders have no GPU.
{venv}/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu -r "$SOURCE/requirements.txt"
{venv}/bin/pip install --no-deps "$SOURCE/package"
{venv}/bin/python -m ipykernel install --sys-prefix --name python3
{venv}/bin/python -c "import traindeep.course.grade"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
ROOT="${{TRAINDEEP_AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{TRAINDEEP_AUTOGRADER_PYTHON:-{venv}/bin/python}}"
cd "$ROOT" && exec "$PYTHON" -m traindeep.course.gradescope "$ROOT"
"""


class AutograderError(ValueError):
    """A lab or environment the autograder cannot be built from."""


# -- building the zip -----------------------------------------------------------------------------------

def _pins(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name)] = f"{name.strip()}=={version.strip()}"
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def grading_requirements(requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """Pinned lines for the package's core and its `course` extra, with everything they pull in.

    The dependency tree is read from the installed distributions (importlib.metadata); each pin
    comes from the project's requirements.txt, and a package missing there is refused by name
    (pip, setuptools and wheel excepted: pip resolves those itself).
    """
    from packaging.requirements import Requirement

    pins = _pins(requirements)
    wanted = [Requirement(r) for r in metadata.requires("traindeep") or []]
    roots = [r for r in wanted if r.marker is None or r.marker.evaluate({"extra": "course"})]
    seen, todo, missing = set(), [r.name for r in roots], []
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        if name in UNPINNED:
            continue
        if name not in pins:
            missing.append(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            r = Requirement(text)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    if missing:
        raise AutograderError(f"{requirements} pins no version of {', '.join(sorted(missing))}, which grading needs")
    return sorted((pins[n] for n in seen - UNPINNED), key=str.lower)


def _package_files() -> list[tuple[Path, str]]:
    """(file, path in the zip) for the package source and what `pip install` needs beside it."""
    files = [(ROOT / "pyproject.toml", "package/pyproject.toml")]
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((path, "package/" + path.relative_to(PACKAGE.parent).as_posix()))
    return files


def build(solution, out) -> Path:
    """Write the autograder zip for `solution` (a solutions/NAME.ipynb) to `out`."""
    solution = Path(solution)
    questions(read_notebook(solution))  # refuse a notebook that is not a lab with questions, now
    config = {"lab": solution.name, "solution": f"solution/{solution.name}", "timeout": 600.0,
              "cell_timeout": None, "memory_gb": 4.0}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        _add(zf, "setup.sh", SETUP.replace("{venv}", VENV), executable=True)
        _add(zf, "run_autograder", RUN.format(venv=VENV), executable=True)
        _add(zf, "requirements.txt", "\n".join(grading_requirements()) + "\n")
        _add(zf, "autograder.json", json.dumps(config, indent=1) + "\n")
        _add(zf, config["solution"], solution.read_bytes())
        _add(zf, "package/README.md", "The traindeep package, packed for a Gradescope autograder.\n")
        for path, name in _package_files():
            _add(zf, name, path.read_bytes())
    return out


def _add(zf: zipfile.ZipFile, name: str, data, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


# -- grading one submission ---------------------------------------------------------------------------------

def _pick(items, lab_name: str):
    """The submission to grade: the notebook named like the lab, else the only one; (item, why not)."""
    usable = [i for i in items if not i.problem]
    named = [i for i in usable if i.path.name == lab_name]
    if len(named) == 1:
        return named[0], ""
    if len(usable) == 1:
        return usable[0], ""
    if not usable:
        found = ", ".join(f"{i.path.name} ({i.problem})" for i in items)
        return None, ("No notebook (.ipynb) was found in your submission." if not items
                      else f"No gradable notebook was found in your submission: {found}.")
    return None, (f"Your submission holds {len(usable)} notebooks ({', '.join(i.path.name for i in usable)}); "
                  f"submit one, named {lab_name}.")


def sandbox_works() -> bool:
    from . import sandbox

    return sandbox.mode() is not None


def run(root) -> dict:
    """Grade ROOT/submission against the packed solution; write and return ROOT/results/results.json."""
    from .grade import Grader
    from .intake import Submission, collect

    start = time.monotonic()
    root = Path(root)
    config = json.loads((root / "source" / "autograder.json").read_text())
    (root / "results").mkdir(parents=True, exist_ok=True)
    isolated = sandbox_works()
    isolation = ("Graded in the bubblewrap sandbox, inside Gradescope's container for this submission."
                 if isolated else
                 "Graded WITHOUT the bubblewrap sandbox (it cannot create namespaces in this container); "
                 "Gradescope's own container for this submission is the isolation.")
    print(isolation)
    grader = Grader(root / "source" / config["solution"], timeout=config["timeout"],
                    cell_timeout=config["cell_timeout"], memory_gb=config["memory_gb"], sandbox=isolated)
    # The feedback's probe lines, with their drawn inputs and expected values, go only into the entries
    # Gradescope shows after the due date (results_json keeps them out of everything visible before).
    grader.release_details = True
    item, problem = _pick(collect([root / "submission"]) if (root / "submission").is_dir() else [], config["lab"])
    if item is None:
        results = _ungraded(grader, problem, isolation)
    else:
        try:
            grader.prepare()
        except Exception as error:  # the lab's side failed: say so, and give no one a silent zero
            print(f"the solution could not be run: {error}")  # stdout: what Gradescope shows the instructor
            results = _ungraded(grader, "The autograder failed on the instructor's side (not because of your "
                                         "work); your instructor will regrade this submission.", isolation)
        else:
            outcome = grader.grade(Submission(item.path, "submission", item.original))
            results = results_json(grader, outcome, isolation)
            print(f"{item.path.name}: {outcome.total():g}/{grader.max_points:g}, status: {outcome.status}")
            for test in results["tests"]:
                if "score" in test:
                    print(f"  {test['name']:50s} {test['score']:g}/{test['max_score']:g}")
    results["execution_time"] = round(time.monotonic() - start)
    (root / "results" / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    return results


def _ungraded(grader, why: str, isolation: str) -> dict:
    tests = [{"name": f"{q.id}: {q.title}", "score": 0.0, "max_score": q.points, "status": "failed",
              "visibility": "visible", "output": why, "output_format": "md"} for q in grader.questions]
    return {"score": 0.0, "output": f"{why}\n\n{isolation}", "output_format": "md", "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def _sections(feedback: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The feedback's lines before any question, and each question's lines (without its header)."""
    general, sections, current = [], {}, None
    for line in feedback:
        header = QUESTION_HEADER.match(line)
        if header:
            current = sections.setdefault(header.group(1), [])
        elif current is None:
            general.append(line)
        elif line.strip() and not POINTS_LINE.match(line.strip()):
            current.append(line)
    return general, sections


def results_json(grader, outcome, isolation: str = "") -> dict:
    """Gradescope's results.json for one graded submission (see the module's docstring)."""
    general, sections = _sections(outcome.feedback)
    tests = []
    for q in grader.questions:
        name = f"{q.id}: {q.title}"
        lines = sections.get(q.id)
        if q.manual:
            tests.append({"name": name, "score": 0.0, "max_score": q.points, "visibility": "visible",
                          "output": "Marked by hand against the rubric: the autograder gives it 0 of its "
                                    f"{q.points:g} points, and your marker adds them.", "output_format": "md"})
            continue
        dropped = sum(p.probe.points for p, _ in getattr(grader, "dropped", []) if p.question == q.id)
        score, most = float(outcome.scores.get(q.id, 0) or 0), q.points - dropped
        entry = {"name": name, "score": score, "max_score": most, "status": "passed" if score >= most else "failed",
                 "visibility": "visible", "output_format": "md"}
        if lines is None:  # the run never reached the questions (no answers, a refused file...)
            tests.append({**entry, "output": f"Not graded: {outcome.status}."})
            continue
        visible = [line for line in lines if line.startswith(VISIBLE)]
        hidden = [line for line in lines if not line.startswith(VISIBLE)]
        count = sum(1 for p in grader.probes if p.question == q.id)
        tests.append({**entry, "output": "\n".join([f"**{score:g} / {most:g} points** from {count} hidden "
                                                    "test(s) with inputs drawn for you.", *visible])})
        if hidden:
            tests.append({"name": f"{q.id}: hidden tests, in detail", "visibility": "after_due_date",
                          "output": "\n".join(hidden), "output_format": "md"})
    text = [f"Automatic score: **{outcome.total():g} / {grader.max_points:g}**", "", f"Status: {outcome.status}"]
    text += [line for line in general if line.strip()] + ["", isolation]
    return {"score": float(outcome.total()), "output": "\n".join(text).strip(), "output_format": "md",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.environ.get("TRAINDEEP_AUTOGRADER_ROOT", "/autograder"))
    run(root)
    return 0


def unpack(zip_path, root) -> Path:
    """Lay the zip out as Gradescope does: ROOT/source holds it, ROOT/run_autograder is copied beside."""
    root = Path(root)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    for name in ("run_autograder", "source/run_autograder", "source/setup.sh"):
        (root / name).chmod(0o755)
    return root


if __name__ == "__main__":
    sys.exit(main())
