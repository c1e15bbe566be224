"""Gradebook CSVs for Canvas and Moodle: a made-up roster and batch, round-tripped through the import files."""

import csv

import nbformat
import pytest
from tinylab import ANSWER_1, tiny_solution, with_answers

from traindeep.__main__ import main
from traindeep.course.gradebook import RosterError, match, read_roster, safe_cell, write_gradebook

QUESTIONS = ["q1", "q2", "q3"]
GRADES = [  # student, file, q1, q2, q3, total, status
    ("doejane_1001_55501_lab01", "subs/doejane_1001_55501_lab01.ipynb", "2", "2", "manual", "4", "ok"),
    ("smithbob_1002_55502_lab01", "subs/smithbob_1002_55502_lab01.ipynb", "2", "0", "manual", "2", "ok"),
    ("weili_lab01", "subs/weili_lab01.ipynb", "0", "1", "manual", "1", "ok"),
    ("stranger", "subs/stranger.ipynb", "2", "2", "manual", "4", "ok"),
    ("crashy_1005_55505_lab01", "subs/crashy_1005_55505_lab01.ipynb", "0", "0", "manual", "0",
     "grader error: OSError: disk full"),
]
CANVAS_ROSTER = [  # Canvas's gradebook export: a Points Possible row, then one row per student
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 0 (1234)"],
    ["    Points Possible", "", "", "", "", "10"],
    ["Doe, Jane", "1001", "S1001", "jdoe", "Tuesday", ""],
    ["Smith, Bob", "1002", "S1002", "bsmith", "Tuesday", ""],
    ["Wei, Li", "1003", "S1003", "lwei", "Friday", ""],
    ["Absent, Anna", "1004", "S1004", "aabsent", "Friday", ""],
    ["Crash, Carl", "1005", "S1005", "=HYPERLINK(\"http://evil\")", "Friday", ""],
]
MOODLE_ROSTER = [
    ["First name", "Last name", "ID number", "Institution", "Department", "Email address"],
    ["Jane", "Doe", "S1001", "Uni", "CS", "jane.doe@uni.edu"],
    ["Bob", "Smith", "S1002", "Uni", "CS", "bob.smith@uni.edu"],
    ["Li", "Wei", "S1003", "Uni", "CS", "li.wei@uni.edu"],
    ["Anna", "Absent", "S1004", "Uni", "CS", "anna@uni.edu"],
]


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


MOODLE_GRADES = [  # Moodle's "download all submissions": one folder per student, named after them
    ("Jane_Doe_501", "subs/Jane Doe_501_assignsubmission_file_/lab01.ipynb", "2", "2", "manual", "4", "ok"),
    ("Bob_Smith_502", "subs/Bob Smith_502_assignsubmission_file_/lab01.ipynb", "2", "0", "manual", "2", "ok"),
    ("Li_Wei_503", "subs/Li Wei_503_assignsubmission_file_/lab01.ipynb", "0", "1", "manual", "1", "ok"),
    ("stranger", "subs/stranger.ipynb", "2", "2", "manual", "4", "ok"),
]


def grades_folder(folder, grades):
    """An output folder holding a grades.csv as the grader writes it (4 automatic points, q3 by hand)."""
    folder.mkdir()
    write_csv(folder / "grades.csv", [["student", "file", *QUESTIONS, "total", "max", "status", "seconds"]]
              + [[s, f, a, b, c, t, "4", status, "1.0"] for s, f, a, b, c, t, status in grades])
    return folder


@pytest.fixture
def graded(tmp_path):
    return grades_folder(tmp_path / "out", GRADES)


def test_canvas_csv_puts_every_students_points_in_their_row(graded, tmp_path, capsys):
    roster = write_csv(tmp_path / "roster.csv", CANVAS_ROSTER)
    write_gradebook(graded, roster, "canvas", "Lab 1: signal propagation")
    rows = read_csv(graded / "canvas.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1: signal propagation"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "4"]
    by_id = {r[1]: r for r in rows[2:]}
    assert by_id["1001"] == ["Doe, Jane", "1001", "S1001", "jdoe", "Tuesday", "4"]  # ID in the file name
    assert by_id["1002"][-1] == "2"
    assert by_id["1003"][-1] == "1"  # no ID in 'weili_lab01.ipynb': matched by Canvas's lastnamefirstname
    assert set(by_id) == {"1001", "1002", "1003"}, "no row for the absent student, the stranger or the crash"
    problems = {(r[0], r[1] or r[3]) for r in read_csv(graded / "unmatched.csv")[1:]}
    assert problems == {("no roster row", "stranger"), ("no submission", "Absent, Anna"),
                        ("not exported", "crashy_1005_55505_lab01")}
    printed = capsys.readouterr().out
    assert "stranger" in printed and "Absent, Anna" in printed and "3 of 5 roster students" in printed
    assert "hand-marked q3 not included" in printed


def test_two_students_of_one_name_are_not_guessed(tmp_path):
    roster = write_csv(tmp_path / "roster.csv", MOODLE_ROSTER + [["Li", "Wei", "S2003", "", "", "li.wei2@uni.edu"]])
    m = match([dict(zip(["student", "file"], MOODLE_GRADES[2][:2]), status="ok")], read_roster(roster))
    assert m.matched == [] and m.problems[0]["problem"] == "several roster rows"
    assert "Wei" in m.problems[0]["reason"]


def test_moodle_csv_maps_by_email_with_a_feedback_column(tmp_path):
    graded = grades_folder(tmp_path / "out", MOODLE_GRADES)
    roster = write_csv(tmp_path / "roster.csv", MOODLE_ROSTER)
    write_gradebook(graded, roster, "moodle", "Lab 1")
    rows = read_csv(graded / "moodle.csv")
    assert rows[0] == ["Email address", "Lab 1", "Feedback"]
    grades = {r[0]: (r[1], r[2]) for r in rows[1:]}
    assert set(grades) == {"jane.doe@uni.edu", "bob.smith@uni.edu", "li.wei@uni.edu"}
    assert grades["bob.smith@uni.edu"][0] == "2"
    assert grades["bob.smith@uni.edu"][1].startswith("Automatic score 2 / 4 (q1 2, q2 0). Status: ok.")
    unmatched = {r[0] for r in read_csv(graded / "unmatched.csv")[1:]}
    assert unmatched == {"no roster row", "no submission"}  # the stranger and Anna


def test_a_submission_column_wins_over_identifiers(graded, tmp_path):
    roster = write_csv(tmp_path / "roster.csv", [["ID", "submission"], ["1001", "doejane_1001_55501_lab01"],
                                                 ["1002", "stranger.ipynb"]])
    matching = write_gradebook(graded, roster, "canvas", "Lab 1")
    assert sorted((row["ID"], g["student"]) for row, g in matching.matched) == \
        [("1001", "doejane_1001_55501_lab01"), ("1002", "stranger")]


def test_one_student_with_two_submissions_gets_neither(tmp_path):
    resubmitted = ("doejane_LATE_1001_55509_lab01", "subs/doejane_LATE_1001_55509_lab01.ipynb", "0", "0",
                   "manual", "0", "ok")
    graded = grades_folder(tmp_path / "out", GRADES[:2] + [resubmitted])
    matching = write_gradebook(graded, write_csv(tmp_path / "roster.csv", CANVAS_ROSTER[:4]), "canvas", "Lab 1")
    assert [row["ID"] for row, _ in matching.matched] == ["1002"]
    assert sorted((p["problem"], p["student"]) for p in matching.problems) == [
        ("several submissions", "doejane_1001_55501_lab01"),
        ("several submissions", "doejane_LATE_1001_55509_lab01")]


def test_formulas_are_neutralised(graded, tmp_path):
    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=x", "Doe, Jane", "4")] == \
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\t=x", "Doe, Jane", "4"]
    roster = write_csv(tmp_path / "roster.csv", CANVAS_ROSTER[:2] + [
        ["=cmd|' /C calc'!A0", "1001", "S1001", "@jdoe", "-1", ""]])
    write_gradebook(graded, roster, "canvas", "+Lab")
    rows = read_csv(graded / "canvas.csv")
    assert rows[0][-1] == "'+Lab" and rows[2] == ["'=cmd|' /C calc'!A0", "1001", "S1001", "'@jdoe", "'-1", "4"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in read_csv(graded / "unmatched.csv")
               for cell in row)


def test_unusable_rosters_are_refused_with_a_reason(graded, tmp_path):
    with pytest.raises(RosterError, match="none of the columns that identify a student"):
        write_gradebook(graded, write_csv(tmp_path / "r.csv", [["Name"], ["Jane"]]), "canvas", "Lab 1")
    with pytest.raises(RosterError, match="Canvas matches students by ID"):
        write_gradebook(graded, write_csv(tmp_path / "r.csv", MOODLE_ROSTER), "canvas", "Lab 1")


def test_grade_writes_the_gradebook_after_a_real_batch(tmp_path, capsys):
    """End to end on the tiny lab: `grade --roster --lms canvas --similarity` after grading three real
    submissions (two of them the same notebook)."""
    solution = tmp_path / "tiny.ipynb"
    nbformat.write(tiny_solution(), solution)
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(with_answers(tiny_solution(), a1=ANSWER_1, a2="def he_std(fan_in):\n    return 1 / fan_in"),
                   subs / "doejane_1001_9_tiny.ipynb")
    nbformat.write(tiny_solution(), subs / "smithbob_1002_9_tiny.ipynb")
    nbformat.write(tiny_solution(), subs / "latecomer.ipynb")
    roster = write_csv(tmp_path / "roster.csv", CANVAS_ROSTER[:4])
    out = tmp_path / "out"
    assert main(["grade", str(solution), str(subs), "--out", str(out), "--seed", "1", "--roster", str(roster),
                 "--lms", "canvas", "--assignment", "Tiny lab", "--workers", "2", "--similarity"]) == 0
    rows = {r[1]: r[-1] for r in read_csv(out / "canvas.csv")[2:]}
    assert rows == {"1001": "2", "1002": "4"}, "q1's 2 points for Jane, all 4 for Bob"
    assert [r[:2] for r in read_csv(out / "unmatched.csv")[1:]] == [["no roster row", "latecomer"]]
    assert "latecomer" in capsys.readouterr().out
    with open(out / "similarity" / "similarity.csv", newline="") as f:
        similar = {(r["student_a"], r["student_b"], r["question"]): r["flagged"] for r in csv.DictReader(f)}
    assert similar[("latecomer", "smithbob_1002_9_tiny", "q3")] == "yes", "two copies of one text are flagged"


def test_lms_needs_a_roster(tmp_path, capsys):
    assert main(["grade", "x.ipynb", "y", "--out", str(tmp_path), "--lms", "canvas"]) == 2
    assert "--lms needs --roster" in capsys.readouterr().err
