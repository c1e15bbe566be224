"""What the grader writes: grades.csv, one feedback file per student, one file per hand-marked question.

Everything from a submission is escaped on the way out: names are already
sanitized, statuses are single printable lines, and free-text answers sit in
fenced blocks longer than any fence inside them, so no answer can forge a
heading or a rubric note in the marker's file.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from .intake import escaped


def fenced(text: str) -> str:
    """`text` as a fenced block that nothing inside it can close."""
    longest = max((len(m) for m in re.findall(r"`+|~+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{escaped(text, 20_000)}\n{fence}"


def write_report(grader, outcomes, out: Path) -> None:
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    columns = ["student", "file"] + [q.id for q in grader.questions] + ["total", "max", "status", "seconds"]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for o in outcomes:
            scores = [o.scores[q.id] for q in grader.questions]
            writer.writerow([o.student, escaped(o.original).replace("\n", "\\n")]
                            + [v if isinstance(v, str) else f"{v:g}" for v in scores]
                            + [f"{o.total():g}", f"{grader.max_points:g}", o.status, f"{o.seconds:.1f}"])
    manual = [q for q in grader.questions if q.manual]
    for o in outcomes:
        header = [f"# Feedback for {o.student}: {grader.solution_path.stem}", "",
                  f"Automatic score: **{o.total():g} / {grader.max_points:g}**"
                  + (f" (plus {len(manual)} question(s) marked by hand)" if manual else ""), "",
                  f"Status: {o.status}", ""]
        (out / "feedback" / f"{o.student}.md").write_text("\n".join(header + o.feedback) + "\n", encoding="utf-8")
    # One file per hand-marked question: its rubric, then every student's answer, for the marker.
    for q in manual:
        (out / "manual").mkdir(exist_ok=True)
        lines = [f"# {q.id}: {q.title} ({q.points:g} points, marked by hand)", "", f"**Rubric.** {q.rubric}", "",
                 "Each answer is quoted verbatim in a fenced block.", ""]
        for o in outcomes:
            answer = o.manual.get(q.id)
            lines += [f"## {o.student}", "", fenced(answer) if answer else "*(no answer)*", ""]
        (out / "manual" / f"{q.id}.md").write_text("\n".join(lines), encoding="utf-8")
