"""Batch grading: splice each student's answers into the instructor's notebook and score them.

Points come only from hidden probes. Each probe is an expression, formatted
with inputs drawn when grading starts, that runs in the student's kernel; its
value is printed behind a random marker and judged here, outside the kernel,
against the solution's value or a rule. Public checks run too, for the
feedback, but earn nothing: patching them (or the builtins) gains no points.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .labformat import (
    Question,
    is_answer,
    is_check,
    is_helper,
    is_unanswered,
    judge,
    question_of,
    questions,
    stub_source,
)
from .notebooks import NotebookError, read_notebook
from .runner import run_isolated, sandbox_command

PROBE_TEMPLATE = '''# Probe added by the grader.
def _traindeep_probe():
    import json, sys

    def plain(v):
        if hasattr(v, "detach"):
            v = v.detach().cpu().tolist()
        elif hasattr(v, "tolist"):
            v = v.tolist()
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {{str(k): plain(x) for k, x in v.items()}}
        return repr(v)[:200]

    import builtins
    vars(builtins).update(_traindeep_builtins)  # undo any patching of the builtins by earlier cells
    try:
        payload = {{"value": plain(eval({expr!r}, globals()))}}
    except BaseException as error:
        payload = {{"error": (type(error).__name__ + ": " + str(error))[:300]}}
    sys.stdout.write({nonce!r} + json.dumps(payload) + {nonce!r} + "\\n")


_traindeep_probe()'''


RELOAD_SOURCE = """import importlib, sys
for _name in sorted(n for n in list(sys.modules) if n.split(".")[0] == "traindeep"):
    importlib.reload(sys.modules[_name])"""


@dataclass
class DrawnProbe:
    question: str
    name: str
    expr: str
    drawn: dict
    probe: object

    @property
    def key(self) -> str:
        """Names the probe's value in the run's results (probe names repeat across questions)."""
        return self.name + "@" + self.question


@dataclass
class Outcome:
    student: str
    scores: dict = field(default_factory=dict)  # question id -> points or "manual"
    status: str = "ok"
    seconds: float = 0.0
    feedback: list = field(default_factory=list)  # markdown lines
    manual: dict = field(default_factory=dict)  # question id -> the student's free-text answer

    def total(self):
        return sum(v for v in self.scores.values() if isinstance(v, (int, float)))


class Grader:
    """Grades submissions against one solution notebook."""

    def __init__(self, solution, timeout=600.0, cell_timeout=120.0, memory_gb=4.0, seed=None, sandbox=True):
        self.solution_path = Path(solution)
        self.solution = read_notebook(self.solution_path)
        self.questions: list[Question] = questions(self.solution)
        self.timeout, self.cell_timeout, self.memory_gb = timeout, cell_timeout, memory_gb
        self.sandbox = sandbox
        self.seed = seed if seed is not None else secrets.randbits(32)
        rng = random.Random(self.seed)
        self.probes = []
        for q in self.questions:
            for p in q.probes:
                expr, drawn = p.instantiate(rng)
                self.probes.append(DrawnProbe(q.id, p.name, expr, drawn, p))
        self.reference = None

    @property
    def max_points(self) -> float:
        return sum(q.points for q in self.questions if not q.manual)

    # -- the instructor's reference values ---------------------------------------------------------
    def prepare(self) -> None:
        """Run the solution once to learn the reference values; it must pass its own probes."""
        with tempfile.TemporaryDirectory(prefix="traindeep-solution-") as tmp:
            values, run = self._run(self.solution, Path(tmp))
        failures = []
        for probe in self.probes:
            payload = values.get(probe.key)
            if payload is None or "error" in payload:
                failures.append(f"{probe.question}/{probe.name}: {payload}")
            elif probe.probe.rule and not judge(probe.probe, payload["value"], None)[0]:
                failures.append(f"{probe.question}/{probe.name}: {judge(probe.probe, payload['value'], None)[1]}")
        if failures or run.problems:
            raise RuntimeError(f"the solution {self.solution_path} fails its own probes: "
                               + "; ".join(failures + run.problems))
        self.reference = {k: v["value"] for k, v in values.items()}

    # -- one submission -----------------------------------------------------------------------------
    def grade(self, path: Path, student: str) -> Outcome:
        start = time.monotonic()
        outcome = Outcome(student, {q.id: ("manual" if q.manual else 0) for q in self.questions})
        digest = _digest(path)
        try:
            outcome = self._grade(path, outcome)
        except NotebookError as error:
            outcome.status = f"not a notebook: {str(error).split(': ', 1)[-1]}"
            outcome.feedback.append(f"Your file could not be read as a notebook: {error}")
        except Exception as error:  # the batch goes on whatever one submission does
            outcome.status = f"grader error: {type(error).__name__}: {str(error)[:200]}"
        if _digest(path) != digest:
            outcome.status += "; WARNING: the submission file changed while grading"
        outcome.seconds = time.monotonic() - start
        return outcome

    def _grade(self, path: Path, outcome: Outcome) -> Outcome:
        if path.suffix != ".ipynb":
            raise NotebookError(f"{path.name}: expected a .ipynb notebook")
        submission = read_notebook(path)
        graded, notes, answered = splice(self.solution, submission)
        if not any(answered.values()):
            outcome.status = "answers missing: no answer cell holds an answer"
            outcome.feedback.append("No answer was found: every answer cell is empty or still holds the "
                                    "`raise NotImplementedError` stub.")
            return outcome
        with tempfile.TemporaryDirectory(prefix="traindeep-grade-") as tmp:
            values, run = self._run(graded, Path(tmp))
        notes += run.problems
        for q in self.questions:
            lines = [f"## {q.id}: {q.title}"]
            if q.manual:
                outcome.manual[q.id] = "\n\n".join(c.source for c in graded.cells
                                                   if is_answer(c) and question_of(c) == q.id) if answered[q.id] else ""
                lines.append("Marked by hand (see the rubric).")
                outcome.feedback += lines + [""]
                continue
            if not answered[q.id]:
                lines.append("Not answered.")
            points = 0.0
            for probe in (p for p in self.probes if p.question == q.id):
                payload = values.get(probe.key)
                if payload is None:
                    ok, why = False, "did not run"
                elif "error" in payload:
                    ok, why = False, f"raised {payload['error']}"
                else:
                    ok, why = judge(probe.probe, payload["value"], self.reference.get(probe.key))
                points += probe.probe.points if ok else 0.0
                inputs = ", ".join(f"{k}={v}" for k, v in probe.drawn.items())
                lines.append(f"- {'✓' if ok else '✗'} {probe.name}" + (f" ({inputs})" if inputs else "")
                             + f": {'passed' if ok else why} [{probe.probe.points if ok else 0:g}/"
                             f"{probe.probe.points:g}]")
            outcome.scores[q.id] = round(points, 4)
            lines += _cell_report(run.nb, q.id) if run.nb is not None else []
            outcome.feedback += lines + [f"**{points:g} / {q.points:g} points**", ""]
        if notes:
            outcome.status = "; ".join(notes)
        return outcome

    def _run(self, graded, workdir: Path):
        """Execute `graded` plus one probe cell per probe; return ({probe key: payload}, RunResult)."""
        nb = nbformat.from_dict(json.loads(json.dumps(graded)))
        nonce = "@@" + secrets.token_hex(16) + "@@"
        snapshot = nbformat.v4.new_code_cell("_traindeep_builtins = dict(vars(__import__('builtins')))",
                                             id="grader-setup")
        nb.cells.insert(0, snapshot)
        # Before the probes: reload traindeep and re-run the helper cells, undoing what answers redefined.
        restore = [nbformat.v4.new_code_cell(RELOAD_SOURCE, id="grader-reload")]
        restore += [nbformat.v4.new_code_cell(c.source, id=f"grader-helper-{i}")
                    for i, c in enumerate(c for c in graded.cells if is_helper(c))]
        for cell in restore:
            cell.metadata = {"tags": ["probe"]}
        nb.cells += restore
        keys = []
        for i, probe in enumerate(p for p in self.probes if not p.probe.outputs):
            cell = nbformat.v4.new_code_cell(PROBE_TEMPLATE.format(expr=probe.expr, nonce=nonce), id=f"probe-{i}")
            cell.metadata = {"tags": ["probe"], "traindeep": {"question": probe.question}}
            nb.cells.append(cell)
            keys.append(probe.key)
        run = run_isolated(nb, workdir, self.timeout, self.cell_timeout, self.memory_gb, self.sandbox)
        values = {}
        if run.nb is not None:
            probe_cells = [c for c in run.nb.cells if c.get("id", "").startswith("probe-")]
            for key, cell in zip(keys, probe_cells):
                text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
                match = re.search(re.escape(nonce) + r"(.*?)" + re.escape(nonce), text, re.S)
                if match:
                    try:
                        values[key] = json.loads(match.group(1))
                    except json.JSONDecodeError:
                        pass
            for probe in (p for p in self.probes if p.probe.outputs):
                values[probe.key] = {"value": float(sum(
                    probe.probe.outputs in output.get("data", {})
                    for cell in run.nb.cells if is_answer(cell) and question_of(cell) == probe.question
                    for output in cell.get("outputs", [])))}
        return values, run


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def splice(solution, submission):
    """The solution notebook with its answer cells replaced by the student's.

    Each answer cell is matched, in this order, by cell id; by the order of the
    student's `answer`-tagged cells when ids were regenerated (Colab saves none);
    by position when the tags are gone too but the cell layout is the lab's; and
    last by content, a cell holding the stub's first line (`def fans(weight):`).
    Returns (notebook, notes, {question id: answered?}).
    """
    graded = nbformat.from_dict(json.loads(json.dumps(solution)))
    answers = [c for c in graded.cells if is_answer(c)]
    wanted = {c.id for c in answers}
    matches = {c.id: s for s in submission.cells for c in answers
               if s.get("id") == c.id and s.cell_type == c.cell_type}
    unmatched = [c for c in answers if c.id not in matches]
    unclaimed = [s for s in submission.cells if is_answer(s) and s.get("id") not in wanted]
    if not any(is_answer(s) for s in submission.cells) and \
            [s.cell_type for s in submission.cells] == [c.cell_type for c in graded.cells]:
        unclaimed = [submission.cells[i] for i, c in enumerate(graded.cells) if c.id not in matches and is_answer(c)]
    by_position = {}
    if len(unmatched) == len(unclaimed):
        by_position = {c.id: s for c, s in zip(unmatched, unclaimed) if s.cell_type == c.cell_type}
    matches.update(by_position)
    used = {id(s) for s in matches.values()}
    by_content = {}
    for cell in (c for c in answers if c.id not in matches):
        first = _signature(stub_source(cell))
        found = next((s for s in submission.cells if first and s.cell_type == cell.cell_type
                      and id(s) not in used and first in s.source), None)
        if found is not None:
            by_content[cell.id] = found
            used.add(id(found))
    matches.update(by_content)
    answered, missing = {}, []
    for cell in answers:
        student = matches.get(cell.id)
        if student is None:
            missing.append(cell.id)
        source = stub_source(cell) if student is None else student.source
        unanswered = is_unanswered(source, cell.cell_type) or source.strip() == stub_source(cell).strip()
        cell.source = source
        q = question_of(cell)
        answered[q] = answered.get(q, False) or not unanswered
    for cell in graded.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notes = []
    if by_position:
        notes.append(f"{len(by_position)} answer cell(s) matched by position (their ids had changed)")
    if by_content:
        notes.append(f"{len(by_content)} answer cell(s) matched by content (ids and tags had changed)")
    if missing:
        notes.append(f"{len(missing)} answer cell(s) not found in the submission")
    unanswered = [q for q, ok in answered.items() if not ok]
    if unanswered and len(unanswered) < len(answered):
        notes.append("unanswered: " + ", ".join(unanswered))
    return graded, notes, answered


def _signature(stub: str) -> str:
    """What identifies a stub in a student's cell: its first `def name(` or `class name`, else its first
    line that is not a comment or the stub itself (a markdown prompt); '' when there is none."""
    lines = [line.strip() for line in stub.splitlines()]
    for line in lines:
        if line.startswith(("def ", "class ")):
            return line.split("(")[0] + ("(" if "(" in line else "")
    for line in lines:
        if line and not line.startswith(("#", "raise NotImplementedError", "<!--")) and "Your answer here" not in line:
            return line
    return ""


def _cell_report(nb, question: str) -> list[str]:
    """The public checks' verdict lines and the errors of a question's cells."""
    lines = []
    for cell in nb.cells:
        if question_of(cell) != question or not (is_answer(cell) or is_check(cell)):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                lines.append(f"- error in your {'answer' if is_answer(cell) else 'check'} cell: "
                             f"`{output.get('ename')}: {str(output.get('evalue'))[:200]}`")
            elif is_check(cell) and output.get("name") == "stdout":
                lines += [f"- public check: {line.strip()}" for line in output.get("text", "").splitlines()
                          if line.strip()[:1] in ("✓", "✗")][:10]
    return lines


def collect(submissions) -> list[tuple[Path, str]]:
    """(file, student name) for each submission; folders contribute their .ipynb files."""
    files = []
    for item in map(Path, submissions):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            files.append(item)
    result, seen = [], {}
    for path in files:
        name = path.parent.name if path.stem.startswith(("lab", "coursework")) and path.parent.name else path.stem
        name = re.sub(r"[^\w.-]+", "_", name) or "submission"
        seen[name] = seen.get(name, 0) + 1
        result.append((path, name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return result


def grade_batch(solution, submissions, out, workers=1, timeout=600.0, cell_timeout=120.0,
                memory_gb=4.0, seed=None, sandbox=True) -> bool:
    """Grade every submission; write OUT/grades.csv and OUT/feedback/. True when all got a row."""
    grader = Grader(solution, timeout, cell_timeout, memory_gb, seed, sandbox)
    items = collect(submissions)
    if sandbox and sandbox_command() is None:
        print("note: bwrap is not available here; submissions run without the sandbox")
    print(f"grading {len(items)} submission(s) against {solution} (probe seed {grader.seed})")
    grader.prepare()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = list(pool.map(lambda item: grader.grade(*item), items))
    write_report(grader, outcomes, Path(out))
    for o in outcomes:
        print(f"{o.student:24s} {o.total():6g}/{grader.max_points:g}  {o.seconds:6.1f}s  {o.status}")
    print(f"wrote {Path(out) / 'grades.csv'} and {len(outcomes)} feedback file(s)")
    return len(outcomes) == len(items)


def write_report(grader: Grader, outcomes: list[Outcome], out: Path) -> None:
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    columns = ["student"] + [q.id for q in grader.questions] + ["total", "max", "status", "seconds"]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for o in outcomes:
            writer.writerow([o.student] + [v if isinstance(v, str) else f"{v:g}" for v in
                                           (o.scores[q.id] for q in grader.questions)]
                            + [f"{o.total():g}", f"{grader.max_points:g}", o.status, f"{o.seconds:.1f}"])
    for o in outcomes:
        manual = [q for q in grader.questions if q.manual]
        header = [f"# Feedback for {o.student}: {grader.solution_path.stem}", "",
                  f"Automatic score: **{o.total():g} / {grader.max_points:g}**"
                  + (f" (plus {len(manual)} question(s) marked by hand)" if manual else ""), "",
                  f"Status: {o.status}", ""]
        (out / "feedback" / f"{o.student}.md").write_text("\n".join(header + o.feedback) + "\n", encoding="utf-8")
    # One file per hand-marked question: its rubric, then every student's answer, for the marker.
    for q in (q for q in grader.questions if q.manual):
        (out / "manual").mkdir(exist_ok=True)
        lines = [f"# {q.id}: {q.title} ({q.points:g} points, marked by hand)", "", f"**Rubric.** {q.rubric}", ""]
        for o in outcomes:
            lines += [f"## {o.student}", "", o.manual.get(q.id) or "*(no answer)*", ""]
        (out / "manual" / f"{q.id}.md").write_text("\n".join(lines), encoding="utf-8")
