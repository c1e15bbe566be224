"""Similarity of students' answers, question by question: evidence for a marker to read, never a verdict.

Each submission is read as text (never executed): its answer cells are found
the way the grader finds them (`grade.splice`), and each question's answers
are compared pairwise with copydetect, a MOSS-style fingerprinting library.
Code is tokenized first (copydetect writes every name as `V`, `F` or `O`, drops
comments and whitespace), so renaming variables or reflowing lines changes
nothing, and reordering lines or functions only breaks the matches that span
the seams. The lab's own template (what the student version of each answer
cell holds: signatures, docstrings, given code) is boilerplate: its
lines are blanked in every answer (found in order, as `difflib` aligns them),
and its fingerprints are copydetect's boilerplate, removed from every answer
wherever it moved to; so it never counts, not even in a match that spans the
seam between a given line and the student's first one. Markdown answers are
compared as plain text.

Fingerprints are every k-gram of the normalized code (copydetect's
guarantee threshold equal to its noise threshold, i.e. no winnowing), so a
report does not change from one run to the next. A pair's similarity on a
question is the larger of the two shares: the share of one student's answer
that also appears in the other's.
"""

from __future__ import annotations

import csv
import difflib
import html
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from .intake import collect, read_capped
from .labformat import is_answer, question_of, questions, stub_source
from .notebooks import NotebookError, parse_notebook, read_notebook

DEFAULT_THRESHOLD = 0.6
DEFAULT_MIN_MATCH = 30  # characters of normalized code (names already reduced to one letter)


@dataclass
class Answer:
    text: str
    markdown: bool


@dataclass(eq=False)
class Pair:
    student_a: str
    student_b: str
    question: str
    share_a: float
    share_b: float
    slices_a: object  # copydetect's 2xN array of matched regions in a's text
    slices_b: object

    @property
    def similarity(self) -> float:
        return max(self.share_a, self.share_b)


def _fingerprint(text: str, markdown: bool, k: int, boilerplate=()):
    from copydetect import CodeFingerprint

    # The file name only tells copydetect's tokenizer the language; nothing is read from disk.
    return CodeFingerprint("answer.md" if markdown else "answer.py", k, 1, boilerplate=list(boilerplate),
                           filter=not markdown, fp=io.StringIO(text))


def without_template(text: str, template: str) -> str:
    """`text` with the lines it shares with `template` (aligned in order) turned into spaces, so that
    every other character keeps its place (the report highlights the original text at the same offsets)."""
    lines = text.splitlines(keepends=True)
    given = [line.strip() for line in template.splitlines()]
    matcher = difflib.SequenceMatcher(None, given, [line.strip() for line in lines], autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.b, block.b + block.size):
            if lines[i].strip():
                lines[i] = " " * len(lines[i].rstrip("\n")) + lines[i][len(lines[i].rstrip("\n")):]
    return "".join(lines)


def _own_slices(blanked: str, slices):
    """The matched regions cut into one region per line of the student's own text, so that the report
    never marks the template's (blanked) lines that lie between two matched lines."""
    import numpy as np

    if getattr(slices, "size", 0) == 0:
        return np.zeros((2, 0), dtype=int)
    cuts = []
    for start, end in zip(*slices):
        for match in re.finditer(r"\S(?:.*\S)?", blanked[start:end]):  # runs of the student's own text per line
            cuts.append((start + match.start(), start + match.end()))
    return np.array(cuts, dtype=int).T.reshape(2, -1)


def template_of(solution) -> dict[str, Answer]:
    """What the student version shows in each question's answer cells, per question."""
    result = {}
    for q in questions(solution):
        cells = [c for c in solution.cells if is_answer(c) and question_of(c) == q.id]
        result[q.id] = Answer("\n\n".join(stub_source(c) for c in cells), cells[0].cell_type == "markdown")
    return result


def answers_of(solution, path: Path, max_bytes: int) -> dict[str, Answer]:
    """{question: the student's answer text}, for the questions the student answered (read, never run)."""
    from .grade import splice

    student = parse_notebook(read_capped(path, max_bytes), path.name, repair_ids=True)
    graded, _, answered = splice(solution, student)
    result = {}
    for q, done in answered.items():
        cells = [c for c in graded.cells if is_answer(c) and question_of(c) == q]
        if done and cells:
            result[q] = Answer("\n\n".join(c.source for c in cells), cells[0].cell_type == "markdown")
    return result


def compare(solution_path, submissions, min_match: int = DEFAULT_MIN_MATCH, max_mb: float = 20.0):
    """Every pair of submissions on every question both answered, most similar first; and the notes
    on submissions that could not be read. Returns (pairs, texts {student: {question: Answer}}, notes)."""
    from copydetect import compare_files

    solution = read_notebook(solution_path)
    template = template_of(solution)
    texts, notes = {}, []
    for item in collect(submissions):
        if item.problem:
            notes.append(f"{item.student}: not compared ({item.problem})")
            continue
        try:
            texts[item.student] = answers_of(solution, item.path, int(max_mb * 2**20))
        except (NotebookError, OSError, ValueError) as error:
            notes.append(f"{item.student}: not compared ({str(error)[:200]})")
    pairs = []
    for q, stub in template.items():
        boilerplate = _fingerprint(stub.text, stub.markdown, min_match).hashes
        own = {s: without_template(a[q].text, stub.text) for s, a in texts.items() if q in a}
        prints = {s: _fingerprint(text, texts[s][q].markdown, min_match, boilerplate) for s, text in own.items()}
        for a, b in itertools.combinations(sorted(prints), 2):
            _, (share_a, share_b), (slices_a, slices_b) = compare_files(prints[a], prints[b])
            pairs.append(Pair(a, b, q, float(share_a), float(share_b), _own_slices(own[a], slices_a),
                              _own_slices(own[b], slices_b)))
    pairs.sort(key=lambda p: (-p.similarity, p.question, p.student_a, p.student_b))
    return pairs, texts, notes


def write_report(solution_path, submissions, out, threshold: float = DEFAULT_THRESHOLD,
                 min_match: int = DEFAULT_MIN_MATCH, max_mb: float = 20.0) -> list[Pair]:
    """Write OUT/similarity.csv (every pair and question, ranked) and OUT/index.html (the flagged ones
    side by side); return the flagged pairs."""
    from .gradebook import safe_cell

    if not 0 < threshold <= 1:
        raise ValueError(f"--threshold is a share between 0 and 1, got {threshold}")
    pairs, texts, notes = compare(solution_path, submissions, min_match, max_mb)
    flagged = [p for p in pairs if p.similarity >= threshold]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "similarity.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "student_a", "student_b", "question", "similarity", "share_a", "share_b", "flagged"])
        for rank, p in enumerate(pairs, 1):
            writer.writerow([rank, safe_cell(p.student_a), safe_cell(p.student_b), p.question,
                             f"{p.similarity:.3f}", f"{p.share_a:.3f}", f"{p.share_b:.3f}",
                             "yes" if p.similarity >= threshold else ""])
    (out / "index.html").write_text(_html(Path(solution_path).stem, pairs, flagged, texts, notes, threshold),
                                    encoding="utf-8")
    print(f"compared {len(texts)} submission(s): {len(pairs)} pair-question(s), {len(flagged)} at or above "
          f"{threshold:g}; wrote {out / 'index.html'} and {out / 'similarity.csv'}")
    for p in flagged[:20]:
        print(f"  {p.similarity:5.2f}  {p.question:6s} {p.student_a} / {p.student_b}")
    for note in notes:
        print(f"  {note}")
    return flagged


STYLE = """body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}tr.flag{background:#fde8e8}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1em}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;
font-size:85%;white-space:pre-wrap}mark{background:#ffd24d}.note{background:#eef4ff;padding:.6em 1em}"""


def _highlighted(text: str, slices) -> str:
    """The answer, escaped, with the matched regions inside <mark>."""
    from copydetect.utils import highlight_overlap

    if slices is None or getattr(slices, "size", 0) == 0:
        return html.escape(text)
    marked, _ = highlight_overlap(text, slices, "<mark>", "</mark>", escape_html=True)
    return marked


def _html(lab: str, pairs, flagged, texts, notes, threshold) -> str:
    e = html.escape
    rows = "\n".join(
        f'<tr class="{"flag" if p.similarity >= threshold else ""}"><td>{i}</td><td>{e(p.student_a)}</td>'
        f"<td>{e(p.student_b)}</td><td>{e(p.question)}</td><td>{p.similarity:.2f}</td><td>{p.share_a:.2f}</td><td>{p.share_b:.2f}</td>"
        f"<td>{'flagged' if p.similarity >= threshold else ''}</td></tr>" for i, p in enumerate(pairs[:200], 1))
    sections = []
    for i, p in enumerate(flagged, 1):
        a, b = texts[p.student_a][p.question], texts[p.student_b][p.question]
        sections.append(
            f'<h3 id="pair-{i}">{i}. {e(p.question)}: {e(p.student_a)} and {e(p.student_b)} '
            f"({p.similarity:.0%})</h3><div class=\"side\">"
            f"<div><b>{e(p.student_a)}</b> ({p.share_a:.0%} of this answer matched)"
            f"<pre>{_highlighted(a.text, p.slices_a)}</pre></div>"
            f"<div><b>{e(p.student_b)}</b> ({p.share_b:.0%} of this answer matched)"
            f"<pre>{_highlighted(b.text, p.slices_b)}</pre></div></div>")
    note_items = "".join(f"<li>{e(n)}</li>" for n in notes)
    more = f"<p>(the first 200 of {len(pairs)}; all are in similarity.csv)</p>" if len(pairs) > 200 else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Similarity: {e(lab)}</title><style>{STYLE}</style></head>
<body><h1>Answer similarity: {e(lab)}</h1>
<p class="note"><b>This is evidence for a person to weigh, not a verdict.</b> Short answers to the same
question, a common idiom or a hint followed closely can look alike without any copying; copied work
can be rewritten until it no longer matches. Read each flagged pair before drawing any conclusion.
The lab's own template never counts, and names, comments and layout are ignored.</p>
<p>{len(texts)} submissions compared, question by question; {len(pairs)} pairs of answers;
{len(flagged)} at or above the threshold {threshold:g} (similarity: the larger share of one answer
found in the other). Highlighted: the regions that match.</p>
{"<ul>" + note_items + "</ul>" if notes else ""}
<h2>Ranking</h2><table><tr><th>#</th><th>student</th><th>student</th><th>question</th><th>similarity</th>
<th>share of first</th><th>share of second</th><th></th></tr>
{rows}</table>{more}
<h2>Flagged pairs, side by side</h2>
{"".join(sections) or "<p>None above the threshold.</p>"}
</body></html>
"""
