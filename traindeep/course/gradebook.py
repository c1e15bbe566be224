"""From grades.csv to the gradebook of an LMS: a roster, the matching, and the import CSV of Canvas or Moodle.

A roster is the CSV an LMS exports of its students (Canvas: *Grades → Export*;
Moodle: a gradebook or participants export). Each roster row is matched to one
graded submission, by the first of these rules that finds anything:

1. a `submission` (or `file`) column naming the submission: the grader's
   student name, the file's name or its name without `.ipynb` (a roster that
   has this column is matched by it alone);
2. an identifier of the row (`ID`, `SIS User ID`, `SIS Login ID`, `ID number`,
   `Email address`, `Username`) that appears as a whole part of the
   submission's path, split at `/` and `_` (Canvas names downloaded files
   `doejane_12345_678901_lab01.ipynb`, 12345 being the student's ID);
3. the student's name, letters and digits only, equal to the start of a path
   part before its first `_` (Canvas's `doejane_...`, Moodle's folder
   `Jane Doe_4321_assignsubmission_file_`).

Nothing is guessed: a submission that matches no roster row or several, a
roster row with no submission or several, and a submission whose grading
failed on the grader's side are left out of the import file and listed in the
terminal and in `unmatched.csv`, so that nobody silently gets a grade or a zero.
Every cell written starts with a character a spreadsheet will not read as a
formula.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

IDENTIFIERS = ("ID", "SIS User ID", "SIS Login ID", "ID number", "Email address", "Email", "Username")
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_IDENTIFIERS = ("Email address", "ID number")  # what Moodle's CSV import can map a user by
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class RosterError(ValueError):
    """A roster or grades file that cannot be used."""


def safe_cell(value) -> str:
    """`value` as text that no spreadsheet evaluates: a leading = + - @ (or tab, CR) gets a quote before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
            return [c.strip() for c in reader.fieldnames or []], rows
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RosterError(f"cannot read {path}: {error}") from None


def read_roster(path) -> list[dict]:
    """The student rows of an LMS roster export (Canvas's 'Points Possible' and blank rows dropped)."""
    columns, rows = _read_csv(Path(path))
    if not any(c in columns for c in (*IDENTIFIERS, "submission", "file")):
        raise RosterError(f"{path} has none of the columns that identify a student ({', '.join(IDENTIFIERS)}) "
                          f"nor a 'submission' column; its columns are {columns}")
    return [row for row in rows
            if any(row.get(c) for c in (*IDENTIFIERS, "submission", "file"))
            and row.get("Student", "").strip() != "Points Possible"]


def display_name(row: dict) -> str:
    """'Doe, Jane' (Canvas), 'Jane Doe' (Moodle), else the first identifier the row has."""
    if row.get("Student"):
        return row["Student"]
    full = " ".join(row.get(c, "") for c in ("First name", "Last name", "Surname") if row.get(c))
    return full or next((row[c] for c in (*IDENTIFIERS, "submission", "file") if row.get(c)), "?")


def _letters(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


def _path_parts(grade: dict) -> list[str]:
    path = grade.get("file", "")
    return [p for p in re.split(r"[/\\_]+", path) if p] + [grade.get("student", "")]


def _by_submission_column(grade: dict, row: dict) -> bool:
    wanted = (row.get("submission") or row.get("file") or "").casefold()
    if not wanted:
        return False
    name = Path(grade.get("file", "")).name
    return wanted in {grade.get("student", "").casefold(), name.casefold(), name.removesuffix(".ipynb").casefold()}


def _by_identifier(grade: dict, row: dict) -> bool:
    parts = {p.casefold() for p in _path_parts(grade)} | {Path(grade.get("file", "")).stem.casefold()}
    return any(row.get(c) and row[c].casefold() in parts for c in IDENTIFIERS)


def _by_name(grade: dict, row: dict) -> bool:
    name = _letters(display_name(row) if row.get("Student") else
                    " ".join(row.get(c, "") for c in ("First name", "Last name", "Surname")))
    if len(name) < 3:
        return False
    heads = {_letters(part.split("_")[0]) for part in re.split(r"[/\\]+", grade.get("file", "")) if part}
    return name in heads


RULES = (("submission column", _by_submission_column), ("identifier in the path", _by_identifier),
         ("name in the path", _by_name))


@dataclass
class Matching:
    matched: list = field(default_factory=list)  # (roster row, grades row)
    problems: list = field(default_factory=list)  # {"problem", "student", "file", "roster", "reason"}


def match(grades: list[dict], roster: list[dict]) -> Matching:
    """Pair roster rows with graded submissions; everything that does not pair one to one is a problem."""
    # A roster that names each row's submission is followed to the letter; otherwise identifiers, then names.
    named = any(row.get("submission") or row.get("file") for row in roster)
    rules = RULES[:1] if named else RULES[1:]
    candidates = {}  # grades index -> roster indices, from the first rule that found any
    for g, grade in enumerate(grades):
        for _, rule in rules:
            found = [r for r, row in enumerate(roster) if rule(grade, row)]
            if found:
                candidates[g] = found
                break
    claims: dict[int, list[int]] = {}
    for g, found in candidates.items():
        if len(found) == 1:
            claims.setdefault(found[0], []).append(g)
    result = Matching()

    def problem(kind, grade=None, row=None, reason=""):
        result.problems.append({"problem": kind, "student": (grade or {}).get("student", ""),
                                "file": (grade or {}).get("file", ""),
                                "roster": display_name(row) if row else "", "reason": reason})

    for g, grade in enumerate(grades):
        found = candidates.get(g, [])
        if not found:
            problem("no roster row", grade, reason="no roster row matches this submission")
        elif len(found) > 1:
            problem("several roster rows", grade, reason="matches " + "; ".join(display_name(roster[r])
                                                                                   for r in found))
    for r, row in enumerate(roster):
        mine = claims.get(r, [])
        if not mine:
            problem("no submission", row=row, reason="no graded submission matches this student")
        elif len(mine) > 1:
            for g in mine:
                problem("several submissions", grades[g], row, f"{len(mine)} submissions match this student")
        elif grades[mine[0]].get("status", "").startswith("grader error"):
            problem("not exported", grades[mine[0]], row,
                    "the grader failed on this submission; regrade it before uploading")
        else:
            result.matched.append((row, grades[mine[0]]))
    return result


def read_grades(out: Path) -> tuple[list[str], list[dict]]:
    """grades.csv's question columns and rows."""
    columns, rows = _read_csv(Path(out) / "grades.csv")
    if not {"student", "file", "total", "max", "status"} <= set(columns):
        raise RosterError(f"{Path(out) / 'grades.csv'} is not a grades file written by `python -m traindeep grade`")
    questions = columns[columns.index("file") + 1:columns.index("total")]
    return questions, rows


def _summary(grade: dict, questions: list[str]) -> str:
    scored = ", ".join(f"{q} {grade[q]}" for q in questions if grade.get(q) != "manual")
    return (f"Automatic score {grade['total']} / {grade['max']} ({scored}). Status: {grade['status']}. "
            "Your feedback file has the details.")


def write_gradebook(out, roster_path, lms: str, assignment: str) -> Matching:
    """Write OUT/canvas.csv or OUT/moodle.csv from OUT/grades.csv and the roster, and OUT/unmatched.csv."""
    out = Path(out)
    questions, grades = read_grades(out)
    roster = read_roster(roster_path)
    matching = match(grades, roster)
    points_possible = grades[0]["max"] if grades else ""
    if lms == "canvas":
        if not any(row.get(c) for row in roster for c in ("ID", "SIS User ID", "SIS Login ID")):
            raise RosterError(f"{roster_path}: Canvas matches students by ID, SIS User ID or SIS Login ID, "
                              "and the roster has none of them; use Canvas's gradebook export as the roster")
        header = [*CANVAS_COLUMNS, assignment]
        rows = [["    Points Possible", "", "", "", "", points_possible]]
        rows += [[row.get(c, "") for c in CANVAS_COLUMNS] + [grade["total"]] for row, grade in matching.matched]
    elif lms == "moodle":
        key = next((c for c in MOODLE_IDENTIFIERS if all(row.get(c) for row, _ in matching.matched)), None)
        if key is None:
            raise RosterError(f"{roster_path}: Moodle's CSV import maps students by email address or ID number, "
                              f"and not every matched roster row has a column {' or '.join(MOODLE_IDENTIFIERS)}")
        header = [key, assignment, "Feedback"]
        rows = [[row[key], grade["total"], _summary(grade, questions)] for row, grade in matching.matched]
    else:
        raise RosterError(f"unknown LMS {lms!r}; expected canvas or moodle")
    _write(out / f"{lms}.csv", header, rows)
    _write(out / "unmatched.csv", ["problem", "student", "file", "roster", "reason"],
           [[p[k] for k in ("problem", "student", "file", "roster", "reason")] for p in matching.problems])
    manual = [q for q in questions if grades and all(g.get(q) == "manual" for g in grades)]
    print(f"wrote {out / f'{lms}.csv'}: {len(matching.matched)} of {len(roster)} roster students, "
          f"out of {points_possible} points" + (f" (hand-marked {', '.join(manual)} not included)" if manual else ""))
    if matching.problems:
        print(f"{len(matching.problems)} not exported (also in {out / 'unmatched.csv'}):")
        for p in matching.problems:
            who = " / ".join(x for x in (p["student"], p["roster"]) if x)
            print(f"  {p['problem']:20s} {who}: {p['reason']}")
    return matching


def _write(path: Path, header: list, rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([safe_cell(c) for c in header])
        writer.writerows([[safe_cell(c) for c in row] for row in rows])
