"""The Gradescope autograder: the zip's layout, and run_autograder in an /autograder-like tree.

results.json is validated against a JSON schema written from Gradescope's
"Autograder Specifications" page (gradescope-autograders.readthedocs.io,
section "Output format"): the keys it documents at the top level and per test,
their types, and the values it lists for visibility, status and the output
formats. No other key is allowed, so a typo fails here rather than on
Gradescope.
"""

import json
import os
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import nbformat
import pytest
from labtools import ROOT
from tinylab import ANSWER_1, tiny_solution, with_answers

from traindeep.__main__ import main
from traindeep.course import gradescope
from traindeep.course.labformat import is_answer, question_of
from traindeep.course.notebooks import read_notebook

LAB01 = ROOT / "solutions" / "lab01_signal_propagation.ipynb"
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
RESULTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "score": {"type": "number"},
                "max_score": {"type": "number"},
                "status": {"enum": ["passed", "failed"]},
                "name": {"type": "string"},
                "name_format": FORMAT,
                "number": {"type": "string"},
                "output": {"type": "string"},
                "output_format": FORMAT,
                "tags": {"type": "array", "items": {"type": "string"}},
                "visibility": VISIBILITY,
                "extra_data": {"type": "object"},
            }}},
        "leaderboard": {"type": "array", "items": {
            "type": "object", "required": ["name", "value"],
            "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                           "order": {"enum": ["asc", "desc"]}}}},
    },
    # "score": optional, but required if not on each test case
    "anyOf": [{"required": ["score"]},
              {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}}],
}


def scored(results):
    return {t["name"].split(":")[0]: t for t in results["tests"] if "score" in t}


def details(results):
    return {t["name"].split(":")[0]: t for t in results["tests"] if "score" not in t}


def autograder_tree(tmp_path, zip_path, notebook, name):
    """An /autograder-like root: the zip unpacked into source/, the notebook in submission/."""
    root = gradescope.unpack(zip_path, tmp_path / f"root-{name}")
    (root / "submission").mkdir()
    shutil.copy(notebook, root / "submission" / notebook.name)
    return root


def run_autograder(root):
    """run_autograder as Gradescope calls it, with the root and the Python of this checkout."""
    env = {**os.environ, "TRAINDEEP_AUTOGRADER_ROOT": str(root),
           "TRAINDEEP_AUTOGRADER_PYTHON": str(ROOT / ".venv" / "bin" / "python"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not be run" not in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return results, done.stdout


@pytest.fixture(scope="module")
def lab01_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradescope") / "autograder.zip"
    assert main(["gradescope", str(LAB01), "--out", str(out)]) == 0
    return out


def test_the_zip_has_gradescopes_layout(lab01_zip, tmp_path):
    with zipfile.ZipFile(lab01_zip) as zf:
        names = set(zf.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
        requirements = zf.read("requirements.txt").decode().split()
        setup = zf.read("setup.sh").decode()
        assert zf.read(f"solution/{LAB01.name}") == LAB01.read_bytes()
    assert {"setup.sh", "run_autograder", "autograder.json", "package/pyproject.toml",
            "package/traindeep/course/grade.py", "package/traindeep/widgets/explorer.js"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert not any("__pycache__" in n for n in names)
    pinned = {line.split("==")[0].lower(): line for line in requirements}
    assert {"torch", "numpy", "nbformat", "nbclient", "ipykernel", "psutil", "pyyaml"} <= set(pinned)
    assert all(line in (ROOT / "requirements.txt").read_text().split() for line in requirements), \
        "every pin is the project's own"
    assert "jupyter-book" not in pinned and "sphinx" not in pinned, "only what grading imports"
    assert "bubblewrap" in setup and "requirements.txt" in setup and '"$SOURCE/package"' in setup
    root = gradescope.unpack(lab01_zip, tmp_path / "root")
    assert subprocess.run(["bash", "-n", str(root / "source" / "setup.sh")]).returncode == 0
    # What setup.sh installs from the zip is a complete package (the wheel holds every module).
    built = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", str(root / "source" / "package"), "-w", str(tmp_path / "wheel")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("traindeep-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert {"traindeep/course/gradescope.py", "traindeep/course/judge.py", "traindeep/widgets/explorer.js"} \
            <= set(zf.namelist())


def test_a_lab_without_questions_is_refused(tmp_path, capsys):
    assert main(["gradescope", str(ROOT / "labs" / LAB01.name), "--out", str(tmp_path / "a.zip")]) == 2
    assert "traindeep.questions" in capsys.readouterr().err and not (tmp_path / "a.zip").exists()


@pytest.fixture(scope="module")
def lab01_results(lab01_zip, tmp_path_factory):
    """run_autograder on the solution, the unfilled lab and He init with fan_out instead of fan_in."""
    tmp = tmp_path_factory.mktemp("runs")
    subs = tmp / "subs"
    subs.mkdir()
    nb = read_notebook(LAB01)
    (q2,) = [c for c in nb.cells if is_answer(c) and question_of(c) == "q2"]
    right = 'fan = fan_in if mode == "fan_in" else fan_out'
    assert right in q2.source
    q2.source = q2.source.replace(right, 'fan = fan_out if mode == "fan_in" else fan_in')
    nbformat.write(nb, subs / "swapped_fans.ipynb")
    notebooks = {"solution": LAB01, "unfilled": ROOT / "labs" / LAB01.name, "swapped_fans": subs / "swapped_fans.ipynb"}
    roots = {name: autograder_tree(tmp, lab01_zip, path, name) for name, path in notebooks.items()}
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(roots, pool.map(run_autograder, roots.values())))
    return runs


def test_the_solution_gets_full_automatic_marks(lab01_results):
    results, stdout = lab01_results["solution"]
    tests = scored(results)
    assert results["score"] == 13 == sum(t["max_score"] for q, t in tests.items() if q != "q5")
    assert all(t["score"] == t["max_score"] and t["status"] == "passed" for q, t in tests.items() if q != "q5")
    assert tests["q5"]["score"] == 0 and tests["q5"]["max_score"] == 2 and "by hand" in tests["q5"]["output"]
    assert "sandbox" in results["output"] and "13/13" in stdout
    assert isinstance(results["execution_time"], int) and results["execution_time"] > 0


def test_hidden_details_wait_for_the_due_date(lab01_results):
    results, _ = lab01_results["solution"]
    hidden = details(results)
    assert set(hidden) == {"q1", "q2", "q3", "q4"}
    assert all(t["visibility"] == "after_due_date" for t in hidden.values())
    assert "(i=" in hidden["q1"]["output"], "the details show the drawn inputs"
    visible = [t["output"] for t in results["tests"] if t["visibility"] == "visible"] + [results["output"]]
    for line in (line for t in hidden.values() for line in t["output"].splitlines()):
        assert all(line not in text for text in visible), f"{line!r} is visible before the due date"
    assert "public check: ✓ fans: exact match" in scored(results)["q1"]["output"], "public checks stay visible"


def test_the_mistake_loses_exactly_its_points(lab01_results):
    solution, mistake = scored(lab01_results["solution"][0]), scored(lab01_results["swapped_fans"][0])
    # The three He probes depend on the mode; the LeCun probe has none and keeps its point.
    assert mistake["q2"]["score"] == 1 and mistake["q2"]["status"] == "failed"
    assert {q: t["score"] for q, t in mistake.items() if q != "q2"} == \
        {q: t["score"] for q, t in solution.items() if q != "q2"}
    assert lab01_results["swapped_fans"][0]["score"] == 13 - 3
    assert details(lab01_results["swapped_fans"][0])["q2"]["output"].count("- ✗") == 3
    assert "did you use fan_out?" in mistake["q2"]["output"], "the public check's hint is shown at once"


def test_the_unfilled_lab_gets_zero_and_says_why(lab01_results):
    results, _ = lab01_results["unfilled"]
    assert results["score"] == 0 and "answers missing" in results["output"]
    assert all(t["score"] == 0 for t in scored(results).values()) and details(results) == {}


@pytest.fixture
def tiny_root(tmp_path):
    solution = tmp_path / "tiny.ipynb"
    nbformat.write(tiny_solution(), solution)
    zip_path = gradescope.build(solution, tmp_path / "autograder.zip")
    root = gradescope.unpack(zip_path, tmp_path / "autograder")
    (root / "submission").mkdir()
    return root


def test_without_bubblewrap_it_grades_and_says_so(tiny_root, monkeypatch):
    nbformat.write(with_answers(tiny_solution(), a1=ANSWER_1), tiny_root / "submission" / "mine.ipynb")
    monkeypatch.setattr(gradescope, "sandbox_works", lambda: False)
    results = gradescope.run(tiny_root)
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert "WITHOUT the bubblewrap sandbox" in results["output"]
    assert results["score"] == 4 and scored(results)["q3"]["score"] == 0
    assert json.loads((tiny_root / "results" / "results.json").read_text()) == results


def test_several_notebooks_pick_the_labs_name_or_explain(tiny_root):
    nbformat.write(tiny_solution(), tiny_root / "submission" / "scratch.ipynb")
    nbformat.write(with_answers(tiny_solution(), a1="def scale(values, factor):\n    return values"),
                   tiny_root / "submission" / "also.ipynb")
    results = gradescope.run(tiny_root)
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["score"] == 0 and "holds 2 notebooks" in results["output"] and "tiny.ipynb" in results["output"]
    nbformat.write(with_answers(tiny_solution(), a1="def scale(values, factor):\n    return values"),
                   tiny_root / "submission" / "tiny.ipynb")
    results = gradescope.run(tiny_root)
    assert results["score"] == 2, "the notebook named like the lab is graded: q2 only"


def test_an_empty_submission_gets_a_result_not_a_crash(tiny_root):
    results = gradescope.run(tiny_root)
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["score"] == 0 and "No notebook" in results["output"]
    assert [t["max_score"] for t in results["tests"]] == [2, 2, 2]
