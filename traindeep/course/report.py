"""What the grader writes: grades.csv, one feedback file per student, one file per hand-marked question.

Everything from a submission is escaped on the way out: names are already
sanitized, statuses are single printable lines, and free-text answers sit in
fenced blocks longer than any fence inside them, so no answer can forge a
heading or a rubric note in the marker's file.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path

from .intake import escaped


def fenced(text: str) -> str:
    """`text` as a fenced block that nothing inside it can close."""
    longest = max((len(m) for m in re.findall(r"`+|~+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{escaped(text, 20_000)}\n{fence}"


def spreadsheet_safe(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts like a formula (=, +, -, @, a tab or a
    carriage return) gets a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def columns(grader) -> list[str]:
    return ["student", "file"] + [q.id for q in grader.questions] + ["total", "max", "status", "seconds"]


def _row(grader, o) -> list[str]:
    scores = [o.scores[q.id] for q in grader.questions]
    return ([spreadsheet_safe(o.student), spreadsheet_safe(escaped(o.original).replace("\n", "\\n"))]
            + [v if isinstance(v, str) else f"{v:g}" for v in scores]
            + [f"{o.total():g}", f"{grader.max_points:g}", spreadsheet_safe(o.status), f"{o.seconds:.1f}"])


def _write_feedback(grader, o, out: Path) -> None:
    manual = [q for q in grader.questions if q.manual]
    header = [f"# Feedback for {o.student}: {grader.solution_path.stem}", "",
              f"Automatic score: **{o.total():g} / {grader.max_points:g}**"
              + (f" (plus {len(manual)} question(s) marked by hand)" if manual else ""), "",
              f"Status: {o.status}", ""]
    (out / "feedback" / f"{o.student}.md").write_text("\n".join(header + o.feedback) + "\n", encoding="utf-8")


def write_report(grader, outcomes, out: Path) -> None:
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns(grader))
        for o in outcomes:
            writer.writerow(_row(grader, o))
    for o in outcomes:
        _write_feedback(grader, o, out)
    # One file per hand-marked question: its rubric, then every student's answer, for the marker.
    for q in (q for q in grader.questions if q.manual):
        (out / "manual").mkdir(exist_ok=True)
        lines = [f"# {q.id}: {q.title} ({q.points:g} points, marked by hand)", "", f"**Rubric.** {q.rubric}", "",
                 "Each answer is quoted verbatim in a fenced block.", ""]
        for o in outcomes:
            answer = o.manual.get(q.id)
            lines += [f"## {o.student}", "", fenced(answer) if answer else "*(no answer)*", ""]
        (out / "manual" / f"{q.id}.md").write_text("\n".join(lines), encoding="utf-8")


def update_report(grader, outcome, out: Path, seed) -> str:
    """Regrade one student into an existing output folder: replace their row of grades.csv and their
    feedback file, touch nothing else, and append what changed to regrade.log. Returns the log line."""
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != columns(grader):
        raise RuntimeError(f"{out / 'grades.csv'} was not written for this lab (its columns differ); "
                           "grade the whole batch instead")
    name = spreadsheet_safe(outcome.student)
    old = next((r for r in rows[1:] if r and r[0] == name), None)
    new = _row(grader, outcome)
    rows = [new if r is old else r for r in rows] if old is not None else rows + [new]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    _write_feedback(grader, outcome, out)
    total = len(columns(grader)) - 4
    before = f"{old[total]}/{old[total + 1]} ({old[total + 2]})" if old is not None else "no row"
    line = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC regraded {outcome.student} (probe seed {seed}): "
            f"{before} -> {new[total]}/{new[total + 1]} ({new[total + 2]})")
    with open(out / "regrade.log", "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return line
