"""The grader on a tiny lab: honest, incomplete, runaway and hostile submissions."""

import csv
import hashlib
import json

import nbformat
import pytest
from tinylab import tiny_solution, with_answers

from traindeep.__main__ import main
from traindeep.course.grade import Grader, collect, splice
from traindeep.course.labformat import LabFormatError, questions
from traindeep.course.labs import lab_from_solution
from traindeep.course.runner import sandbox_command

WRONG_HE = "def he_std(fan_in):\n    return (1.0 / fan_in) ** 0.5"
OUTSIDE = "{outside}"  # replaced by a path outside the grading folder

SUBMISSIONS = {
    # honest work
    "perfect": {},
    "half_right": {"a2": WRONG_HE},
    # incomplete
    "one_answer_deleted": "delete a1",
    "ids_regenerated": "regenerate ids",
    # runaway
    "infinite_loop": {"a1": "while True:\n    pass"},
    "exits_the_kernel": {"a1": "import os\nos._exit(0)"},
    "import_error": {"a2": "import a_module_that_does_not_exist\n" + tiny_solution().cells[3].source},
    "huge_allocation": {"a2": "block = bytearray(3 * 2**30)\n" + tiny_solution().cells[3].source},
    "huge_output": {"a1": "for i in range(200_000):\n    print('spam' * 10)\n" + tiny_solution().cells[1].source},
    # hostile
    "deletes_files": {"a1": "import os, shutil\nfor name in os.listdir('.'):\n"
                            "    shutil.rmtree(name, ignore_errors=True) if os.path.isdir(name) else os.remove(name)\n"
                            + tiny_solution().cells[1].source},
    "writes_outside": {"a1": f"open({OUTSIDE!r}, 'w').write('pwned')\n" + tiny_solution().cells[1].source},
    "patches_checks": {"a2": WRONG_HE + "\nfrom traindeep import checks\n"
                             "checks.compare = lambda *args, **kwargs: print('✓ he_std: exact match')"},
    "patches_builtins": {"a2": WRONG_HE + "\nimport builtins, math\nmath.isclose = lambda *a, **k: True\n"
                               "builtins.abs = lambda x: 0.0\nbuiltins.float = lambda x: 0.125"},
    "redefines_helper": {"a2": WRONG_HE + "\ndef he_ratio(n):\n    return 1.0"},
    "hard_codes_checks": {"a1": "def scale(values, factor):\n    return [3.0, 6.0]",
                          "a2": "def he_std(fan_in):\n    return 0.125"},
}


def make_submission(kind, solution):
    if kind == "delete a1":
        nb = with_answers(solution)
        nb.cells = [c for c in nb.cells if c.id != "a1"]
    elif kind == "regenerate ids":
        nb = with_answers(solution)
        for i, c in enumerate(nb.cells):
            c.id = f"fresh-{i}"
    else:
        nb = with_answers(solution, **kind)
    return nb


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    solution = tiny_solution()
    nbformat.write(solution, root / "tiny.ipynb")
    subs = root / "submissions"
    subs.mkdir()
    outside = root / "outside.txt"
    for name, kind in SUBMISSIONS.items():
        if isinstance(kind, dict):
            kind = {k: v.replace(OUTSIDE, str(outside)) for k, v in kind.items()}
        nbformat.write(make_submission(kind, solution), subs / f"{name}.ipynb")
    lab = lab_from_solution(solution, "labs/tiny.ipynb", "solutions/tiny.ipynb", ("me", "course", "main"))
    nbformat.write(lab, subs / "unfilled_lab.ipynb")
    (subs / "invalid_json.ipynb").write_text('{"cells": [', encoding="utf-8")
    (subs / "not_a_notebook.ipynb").write_text(json.dumps({"title": "my essay"}), encoding="utf-8")
    (subs / "binary.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    nbformat.write(nbformat.v4.new_notebook(), subs / "empty.ipynb")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.iterdir()}
    code = main(["grade", str(root / "tiny.ipynb"), str(subs), "--out", str(root / "out"), "--workers", "2",
                 "--timeout", "60", "--cell-timeout", "5", "--memory-gb", "1.5", "--seed", "7"])
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.iterdir()}
    with open(root / "out" / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return {"code": code, "rows": rows, "root": root, "before": before, "after": after, "outside": outside}


def test_every_submission_gets_a_row_and_the_batch_exits_0(batch):
    assert batch["code"] == 0
    assert set(batch["rows"]) == set(SUBMISSIONS) | {"unfilled_lab", "invalid_json", "not_a_notebook", "binary",
                                                     "empty"}
    header = list(next(iter(batch["rows"].values())))
    assert header == ["student", "q1", "q2", "q3", "total", "max", "status", "seconds"]
    for name in batch["rows"]:
        assert (batch["root"] / "out" / "feedback" / f"{name}.md").exists()


def test_hand_marked_answers_are_collected_with_their_rubric(batch):
    text = (batch["root"] / "out" / "manual" / "q3.md").read_text()
    assert text.startswith("# q3: Explain (2 points, marked by hand)") and "Mentions that ReLU halves." in text
    perfect = text.split("## perfect")[1].split("## ")[0]
    assert "ReLU zeroes half of its inputs" in perfect
    assert "*(no answer)*" in text.split("## unfilled_lab")[1].split("## ")[0]


def test_submissions_are_never_modified(batch):
    assert batch["before"] == batch["after"]


def points(batch, name):
    row = batch["rows"][name]
    return float(row["q1"]), float(row["q2"]), row["q3"], float(row["total"]), row["status"]


def test_honest_submissions(batch):
    assert points(batch, "perfect") == (2.0, 2.0, "manual", 4.0, "ok")
    assert points(batch, "half_right")[:4] == (2.0, 0.0, "manual", 2.0)
    feedback = (batch["root"] / "out" / "feedback" / "half_right.md").read_text()
    assert "✗ he_std: max |difference|" in feedback and "did you use fan_out?" in feedback
    assert "0 / 2 points" in feedback and "Marked by hand" in feedback


def test_the_unfilled_lab_scores_zero_with_answers_missing(batch):
    q1, q2, _, total, status = points(batch, "unfilled_lab")
    assert (q1, q2, total) == (0, 0, 0) and status.startswith("answers missing")


@pytest.mark.parametrize("name,message", [
    ("invalid_json", "not a notebook: invalid JSON"),
    ("not_a_notebook", "not a notebook: JSON but not a notebook"),
    ("binary", "not a notebook: not a text file"),
    ("empty", "answers missing"),
])
def test_unreadable_or_empty_files_get_zero_and_a_reason(batch, name, message):
    _, _, _, total, status = points(batch, name)
    assert total == 0 and status.startswith(message), status


def test_incomplete_submissions(batch):
    q1, q2, _, _, status = points(batch, "one_answer_deleted")
    assert (q1, q2) == (0, 2) and "1 answer cell(s) not found" in status
    q1, q2, _, _, status = points(batch, "ids_regenerated")
    assert (q1, q2) == (2, 2) and "matched by position" in status


def test_runaway_submissions_are_stopped_and_the_rest_still_counts(batch):
    q1, q2, _, _, status = points(batch, "infinite_loop")
    assert (q1, q2) == (0, 2) and "q1 answer cell took longer than 5 s" in status
    assert points(batch, "exits_the_kernel")[3] == 0
    assert "kernel died" in points(batch, "exits_the_kernel")[4]
    q1, q2, _, _, _ = points(batch, "import_error")
    assert (q1, q2) == (2, 0)
    assert "a_module_that_does_not_exist" in (batch["root"] / "out" / "feedback" / "import_error.md").read_text()
    total, status = points(batch, "huge_allocation")[3:]
    assert total == 0 and "used more than 1.5 GiB of memory" in status and "q2 answer" in status
    assert points(batch, "huge_output")[:2] == (2, 2)
    assert float(batch["rows"]["infinite_loop"]["seconds"]) < 40


def test_hostile_submissions_earn_nothing_they_faked(batch):
    assert points(batch, "deletes_files")[:2] == (2, 2)
    for name in ("patches_checks", "patches_builtins", "redefines_helper"):
        q1, q2, *_ = points(batch, name)
        assert (q1, q2) == (2, 0), name
    assert points(batch, "hard_codes_checks")[3] == 0
    feedback = (batch["root"] / "out" / "feedback" / "patches_checks.md").read_text()
    assert "public check: ✓ he_std" in feedback  # the patched check lied, the probe did not


@pytest.mark.skipif(sandbox_command() is None, reason="bwrap is not available on this machine")
def test_the_sandbox_keeps_writes_inside_the_grading_folder(batch):
    assert not batch["outside"].exists()
    assert points(batch, "writes_outside")[:2] == (0, 2)  # its cell failed; the other answer counts
    feedback = (batch["root"] / "out" / "feedback" / "writes_outside.md").read_text()
    assert "Read-only file system" in feedback or "No such file" in feedback


def test_splice_falls_back_to_layout_when_tags_and_ids_are_gone():
    solution = tiny_solution()
    student = with_answers(solution, a2=WRONG_HE)
    for i, c in enumerate(student.cells):
        c.id, c.metadata = f"colab-{i}", {}
    graded, notes, answered = splice(solution, student)
    assert [c.source for c in graded.cells if c.id == "a2"] == [WRONG_HE]
    assert answered == {"q1": True, "q2": True, "q3": True} and "matched by position" in notes[0]


def test_unknown_question_in_a_cell_is_a_clear_format_error():
    nb = tiny_solution()
    nb.cells[1].metadata["traindeep"]["question"] = "q9"
    with pytest.raises(LabFormatError, match="names question 'q9'; expected one of"):
        questions(nb)


def test_collect_names_students_by_file_or_by_folder(tmp_path):
    for who in ("ana", "bo"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "lab01_signal_propagation.ipynb").write_text("{}")
    (tmp_path / "carl.ipynb").write_text("{}")
    names = [name for _, name in collect([tmp_path])]
    assert names == ["ana", "bo", "carl"]


def test_a_solution_that_fails_its_own_probe_is_refused(tmp_path):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"][1]["rule"] = {"between": [0.5, 0.6]}
    nbformat.write(nb, tmp_path / "broken.ipynb")
    with pytest.raises(RuntimeError, match="fails its own probes: q2/he_ratio"):
        Grader(tmp_path / "broken.ipynb", timeout=60).prepare()


def test_the_command_line_explains_a_broken_solution(tmp_path, capsys):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][0]["probes"][0]["rule"] = {"roughly": 1}
    nbformat.write(nb, tmp_path / "broken.ipynb")
    assert main(["grade", str(tmp_path / "broken.ipynb"), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "error: q1/scale: unknown rule {'roughly': 1}" in capsys.readouterr().err


def test_a_loop_that_swallows_interrupts_is_killed_at_the_total_timeout(tmp_path):
    stubborn = ("import time\nwhile True:\n    try:\n        time.sleep(0.5)\n"
                "    except KeyboardInterrupt:\n        pass")
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    nbformat.write(with_answers(tiny_solution(), a1=stubborn), tmp_path / "stubborn.ipynb")
    grader = Grader(tmp_path / "tiny.ipynb", timeout=15, cell_timeout=3, seed=1)
    grader.prepare()
    outcome = grader.grade(tmp_path / "stubborn.ipynb", "stubborn")
    assert outcome.total() == 0 and outcome.seconds < 30
    assert "stopped after the total time limit of 15 s (while running the q1 answer cell)" in outcome.status


def test_splice_finds_answers_by_content_when_cells_were_added_and_metadata_lost():
    solution = tiny_solution()
    student = with_answers(solution, a2=WRONG_HE)
    student.cells.insert(2, nbformat.v4.new_code_cell("print('my own scratch cell')"))
    for i, c in enumerate(student.cells):
        c.id, c.metadata = f"colab-{i}", {}
    graded, notes, answered = splice(solution, student)
    assert [c.source for c in graded.cells if c.id == "a2"] == [WRONG_HE]
    assert "scale" in next(c.source for c in graded.cells if c.id == "a1")
    assert answered == {"q1": True, "q2": True, "q3": True}
    assert notes == ["3 answer cell(s) matched by content (ids and tags had changed)"]
