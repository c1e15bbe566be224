"""Batch grading: splice each student's answers into the instructor's notebook, run it, score it.

Trust boundaries. Student code runs only in the sandbox (`sandbox.py`): a
fresh kernel that sees the Python environment and the package, never the
solution, the reference values, the submissions or other runs. What comes out
of a run is data: each probe's `call` returns raw values (arrays, configs,
records), emitted as a payload of its own. Every score is computed outside:
the judge (`judge.py`, trusted instructor code in a sandbox of its own)
computes each probe's value from that data, and this module compares it with
the solution's. Every message a student sees is written here; the only text
taken from a run is the student's own output, escaped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import queue
import random
import re
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import sandbox
from .intake import FileTooLarge, Submission, collect, escaped, one_line, read_capped
from .labformat import (
    LabFormatError,
    Question,
    forbidden_uses,
    is_answer,
    is_check,
    is_helper,
    is_unanswered,
    judge,
    question_of,
    questions,
    stub_source,
)
from .notebooks import NotebookError, parse_notebook, read_notebook
from .payload import PROBE_MIME
from .report import write_report

SETUP_SOURCE = "_traindeep_builtins = dict(vars(__import__('builtins')))"
# Run again right before the probes: undo what answers redefined or patched by accident.
RESTORE_SOURCE = """import importlib, sys
try:
    vars(__import__('builtins')).update(_traindeep_builtins)
except NameError:
    pass
for _name in sorted(n for n in list(sys.modules) if n.split(".")[0] == "traindeep"):
    importlib.reload(sys.modules[_name])
from traindeep.course.payload import emit as _traindeep_emit"""
PROBE_SOURCE = "_traindeep_emit({index}, lambda: ({call}))"


@dataclass
class DrawnProbe:
    question: str
    name: str
    call: str
    value: str
    drawn: dict
    probe: object

    @property
    def key(self) -> str:
        """Names the probe's value in a run's results (probe names repeat across questions)."""
        return self.name + "@" + self.question


@dataclass
class Outcome:
    student: str
    original: str = ""
    scores: dict = field(default_factory=dict)  # question id -> points or "manual"
    status: str = "ok"
    seconds: float = 0.0
    run_seconds: float = 0.0  # of which the student's sandboxed run; the rest is intake and the judge
    feedback: list = field(default_factory=list)  # markdown lines
    manual: dict = field(default_factory=dict)  # question id -> the student's free-text answer

    def total(self):
        return sum(v for v in self.scores.values() if isinstance(v, (int, float)))


@dataclass
class Evaluation:
    values: dict  # probe key -> {"value": ...} or {"error": ...}
    problems: list  # what went wrong, in the grader's words
    cells: list | None  # each cell's trimmed outputs, None when the run gave nothing readable
    suspicious: list = field(default_factory=list)
    run_seconds: float = 0.0


class Grader:
    """Grades submissions against one solution notebook."""

    def __init__(self, solution, timeout=600.0, cell_timeout=120.0, memory_gb=4.0, seed=None, sandbox=True,
                 max_mb=20.0):
        self.solution_path = Path(solution)
        self.solution = read_notebook(self.solution_path)
        self.questions: list[Question] = questions(self.solution)
        self.cell_timeout = cell_timeout
        self.limits = sandbox_limits(timeout, memory_gb)
        self.sandbox = sandbox
        self.max_bytes = int(max_mb * 2**20)
        self.seed = seed if seed is not None else secrets.randbits(32)
        rng = random.Random(self.seed)
        self.probes = []
        for q in self.questions:
            for p in q.probes:
                call, value, drawn = p.instantiate(rng)
                self.probes.append(DrawnProbe(q.id, p.name, call, value, drawn, p))
        self.helpers = [c.source for c in self.solution.cells if is_helper(c)]
        self.reference = None

    @property
    def max_points(self) -> float:
        return sum(q.points for q in self.questions if not q.manual)

    # -- the instructor's reference values ---------------------------------------------------------
    def prepare(self) -> None:
        """Run the solution once to learn the reference values; it must pass its own probes."""
        graded, _, _ = splice(self.solution, self.solution)
        for q in self.questions:
            used = forbidden_uses(_answers_of(graded, q.id), q.forbid, self.helpers)
            if used:
                raise LabFormatError(f"{q.id}: the solution's own answer uses {used}, which the question forbids")
        evaluation = self._evaluate(graded)
        failures = []
        for probe in self.probes:
            payload = evaluation.values.get(probe.key)
            if payload is None or "error" in payload:
                failures.append(f"{probe.question}/{probe.name}: {payload}")
            elif probe.probe.rule and not judge(probe.probe, payload["value"], None)[0]:
                failures.append(f"{probe.question}/{probe.name}: {judge(probe.probe, payload['value'], None)[1]}")
        if failures or evaluation.problems:
            raise RuntimeError(f"the solution {self.solution_path} fails its own probes: "
                               + "; ".join(failures + evaluation.problems))
        self.reference = {k: v["value"] for k, v in evaluation.values.items()}

    # -- one submission -----------------------------------------------------------------------------
    def grade(self, submission: Submission) -> Outcome:
        start = time.monotonic()
        outcome = Outcome(submission.student, submission.original,
                          {q.id: ("manual" if q.manual else 0) for q in self.questions})
        digest = _digest(submission.path, self.max_bytes)
        try:
            if submission.problem:
                outcome.status = submission.problem
                outcome.feedback.append(f"Your submission was not graded: {submission.problem}.")
            else:
                self._grade(submission, outcome)
        except NotebookError as error:
            outcome.status = f"not a notebook: {str(error).split(': ', 1)[-1]}"
            outcome.feedback.append(f"Your file could not be read as a notebook: {error}")
        except FileTooLarge as error:
            outcome.status = (f"refused: the file is {error.size / 2**20:.1f} MB, "
                              f"over the {self.max_bytes / 2**20:g} MB limit")
        except Exception as error:  # the batch goes on whatever one submission does
            outcome.status = f"grader error: {type(error).__name__}: {str(error)[:200]}"
        if digest is not None and _digest(submission.path, self.max_bytes) != digest:
            outcome.status += "; WARNING: the submission file changed while grading"
        outcome.status = one_line(outcome.status, 400)
        outcome.seconds = time.monotonic() - start
        return outcome

    def _grade(self, submission: Submission, outcome: Outcome) -> None:
        data = read_capped(submission.path, self.max_bytes)
        student = parse_notebook(data, submission.path.name, repair_ids=True)
        graded, notes, answered = splice(self.solution, student)
        if not any(answered.values()):
            outcome.status = "answers missing: no answer cell holds an answer"
            outcome.feedback.append("No answer was found: every answer cell is empty or still holds the "
                                    "`raise NotImplementedError` stub.")
            return
        evaluation = self._evaluate(graded)
        outcome.run_seconds = evaluation.run_seconds
        notes += evaluation.problems
        flags = list(evaluation.suspicious)
        for q in self.questions:
            lines = [f"## {q.id}: {q.title}"]
            if q.manual:
                outcome.manual[q.id] = _answers_of(graded, q.id) if answered[q.id] else ""
                outcome.feedback += lines + ["Marked by hand (see the rubric).", ""]
                continue
            forbidden = forbidden_uses(_answers_of(graded, q.id), q.forbid, self.helpers) if answered[q.id] else []
            if not answered[q.id]:
                lines.append("Not answered.")
            if forbidden:
                lines.append(f"This question asks you to write it yourself; your answer uses {', '.join(forbidden)}, "
                             "so it scores 0.")
            points, passed = 0.0, 0
            for probe in (p for p in self.probes if p.question == q.id):
                ok, why = self._verdict(probe, evaluation.values.get(probe.key))
                passed += ok
                points += probe.probe.points if ok else 0.0
                inputs = ", ".join(f"{k}={v}" for k, v in probe.drawn.items())
                lines.append(f"- {'✓' if ok else '✗'} {probe.name}" + (f" ({inputs})" if inputs else "")
                             + f": {'passed' if ok else why} [{probe.probe.points if ok else 0:g}/"
                             f"{probe.probe.points:g}]")
            if not answered[q.id] and passed:
                flags.append(f"{q.id} is unanswered but {passed} of its probes passed")
            if not answered[q.id] or forbidden:
                points = 0.0
            outcome.scores[q.id] = round(points, 4)
            lines += _cell_report(graded, evaluation.cells, q.id)
            outcome.feedback += lines + [f"**{points:g} / {q.points:g} points**", ""]
        if flags:
            notes.append("SUSPICIOUS: " + "; ".join(flags))
        if notes:
            outcome.status = "; ".join(notes)

    def _verdict(self, probe: DrawnProbe, payload) -> tuple[bool, str]:
        if payload is None:
            return False, "did not run"
        if "error" in payload:
            return False, f"raised {escaped(payload['error'], 300)}"
        return judge(probe.probe, payload["value"], (self.reference or {}).get(probe.key))

    # -- running and judging --------------------------------------------------------------------------
    def _probed(self, graded) -> tuple[nbformat.NotebookNode, dict]:
        """The notebook the sandbox runs: no instructor metadata, then probe cells; {probe cell index: key}."""
        nb = nbformat.v4.new_notebook()
        nb.metadata = {k: graded.metadata[k] for k in ("kernelspec", "language_info") if k in graded.metadata}
        nb.cells = [nbformat.v4.new_code_cell(SETUP_SOURCE, id="grader-setup")]
        nb.cells += [nbformat.from_dict(json.loads(json.dumps(c))) for c in graded.cells]
        nb.cells.append(nbformat.v4.new_code_cell(RESTORE_SOURCE, id="grader-restore"))
        nb.cells += [nbformat.v4.new_code_cell(source, id=f"grader-helper-{i}")
                     for i, source in enumerate(self.helpers)]
        probe_cells = {}
        for i, probe in enumerate(p for p in self.probes if p.call):
            probe_cells[len(nb.cells)] = (i, probe.key)
            nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE.format(index=i, call=probe.call), id=f"probe-{i}"))
        return nb, probe_cells

    def _evaluate(self, graded) -> Evaluation:
        nb, probe_cells = self._probed(graded)
        tasks: queue.Queue = queue.Queue()
        judged: dict = {}

        def judge_input():
            yield (json.dumps({"helpers": self.helpers}) + "\n").encode()
            yield tasks.get()

        def run_judge():
            # Its clock starts with the student's run, which it waits for.
            limits = dataclasses.replace(self.limits, timeout=2 * self.limits.timeout)
            judged["run"] = sandbox.run([sys.executable, "-m", "traindeep.course.judge", str(self.cell_timeout)],
                                        judge_input(), limits, self.sandbox)

        judging = threading.Thread(target=run_judge, daemon=True)
        judging.start()
        payloads: dict = {}
        cells, problems, suspicious = None, [], []
        try:
            run = sandbox.run([sys.executable, "-m", "traindeep.course.runner", str(self.cell_timeout)],
                              nbformat.writes(nb).encode(), self.limits, self.sandbox)
            cells, problems = self._read_run(run, nb)
            if cells is not None:
                payloads, suspicious = _probe_payloads(cells, probe_cells)
        finally:
            ready = [{"key": key, "value": self._probe(key).value, "payload": p["payload"]}
                     for key, p in payloads.items() if "payload" in p]
            tasks.put((json.dumps({"tasks": ready}) + "\n").encode())
        judging.join()
        values = {key: p for key, p in payloads.items() if "error" in p}
        values.update(self._read_judge(judged.get("run"), [t["key"] for t in ready]))
        for probe in (p for p in self.probes if p.probe.outputs and cells is not None):
            values[probe.key] = {"value": float(sum(
                probe.probe.outputs in output.get("data", {})
                for cell, outputs in zip(nb.cells, cells) if is_answer(cell) and question_of(cell) == probe.question
                for output in outputs if isinstance(output, dict) and isinstance(output.get("data"), dict)))}
        return Evaluation(values, problems, cells, suspicious, run.seconds)

    def _probe(self, key: str) -> DrawnProbe:
        return next(p for p in self.probes if p.key == key)

    def _read_run(self, run: sandbox.Completed, nb) -> tuple[list | None, list[str]]:
        """Each cell's outputs and the problems of a run, read from its untrusted output."""
        where = _where(run.stderr, nb)
        if run.killed == "time":
            return None, [f"stopped after the total time limit of {self.limits.timeout:.0f} s{where}"]
        if run.killed == "memory":
            return None, [f"stopped: used more than {self.limits.memory_gb:g} GiB of memory{where}"]
        if run.killed == "output":
            return None, [f"stopped: wrote more than {self.limits.output_mb} MB of output{where}"]
        try:
            result = json.loads(run.stdout)
            cells, events = result["cells"], result["events"]
            if not isinstance(cells, list) or len(cells) != len(nb.cells) or not isinstance(events, list):
                raise ValueError("wrong shape")
        except (ValueError, KeyError, TypeError, RecursionError):
            return None, [f"the run ended unexpectedly{where}"]
        problems = []
        for event in events:
            cell = event.get("cell") if isinstance(event, dict) else None
            name = describe(nb.cells[cell]) if isinstance(cell, int) and 0 <= cell < len(nb.cells) else "a cell"
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "cell_timeout":
                problems.append(f"{name} took longer than {self.cell_timeout:.0f} s and was interrupted")
            elif kind == "kernel_died":
                problems.append(f"the kernel died (while running {name}); cells after it did not run")
            elif kind == "run_failed":
                problems.append(f"the run failed while running {name}")
        return cells, list(dict.fromkeys(problems))

    def _read_judge(self, run: sandbox.Completed | None, keys: list[str]) -> dict:
        try:
            values = json.loads(run.stdout.decode().strip().splitlines()[-1])
            return {k: values[k] for k in keys if isinstance(values.get(k), dict)}
        except (AttributeError, ValueError, IndexError, KeyError, TypeError):
            why = "the judge did not finish" if run is None or run.killed else \
                f"the judge failed: {one_line(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '?')}"
            return {k: {"error": why} for k in keys}


def sandbox_limits(timeout: float, memory_gb: float) -> sandbox.Limits:
    return sandbox.Limits(timeout=timeout, memory_gb=memory_gb)


def _probe_payloads(cells: list, probe_cells: dict) -> tuple[dict, list]:
    """{probe key: {"payload": encoded value} or {"error": ...}} from the probe cells' outputs."""
    payloads, tampered = {}, []
    for index, (number, key) in probe_cells.items():
        outputs = cells[index] if isinstance(cells[index], list) else []
        texts = [o["data"][PROBE_MIME] for o in outputs
                 if isinstance(o, dict) and isinstance(o.get("data"), dict) and PROBE_MIME in o["data"]]
        errors = [o for o in outputs if isinstance(o, dict) and o.get("output_type") == "error"]
        if not texts:
            payloads[key] = {"error": "did not return (the probe cell was interrupted or failed)"
                             if errors else "did not return a result"}
            continue
        try:
            message = json.loads(texts[0])
            if len(texts) != 1 or not isinstance(message, dict) or message.get("probe") != number:
                raise ValueError
        except (ValueError, TypeError, RecursionError):
            payloads[key] = {"error": "its result was tampered with"}
            tampered.append(key.split("@")[0])
            continue
        payloads[key] = ({"error": str(message["error"])[:300]} if "error" in message
                         else {"payload": message.get("value")})
    flags = [f"probe output tampered with ({', '.join(tampered)})"] if tampered else []
    return payloads, flags


def _where(stderr: str, nb) -> str:
    """' (while running the q1 answer cell)', from the last cell index the runner announced."""
    found = re.findall(r"^@cell (\d+)$", stderr, re.M)
    if not found or not int(found[-1]) < len(nb.cells):
        return ""
    return f" (while running {describe(nb.cells[int(found[-1])])})"


def describe(cell) -> str:
    label = question_of(cell)
    if cell.get("id", "").startswith("probe-"):
        return "the grader's probes"
    kind = "answer" if is_answer(cell) else "check" if is_check(cell) else ""
    return f"the {label} {kind} cell" if label and kind else f"cell {cell.get('id')}"


def _answers_of(nb, question: str) -> str:
    return "\n\n".join(c.source for c in nb.cells if is_answer(c) and question_of(c) == question)


def _digest(path: Path, max_bytes: int) -> str | None:
    try:
        return hashlib.sha256(read_capped(path, max_bytes)).hexdigest()
    except OSError:
        return None


def splice(solution, submission):
    """The solution notebook with its answer cells replaced by the student's.

    Each answer cell is matched, in this order, by cell id (among cells that
    shared an id, the one that holds an answer); by the order of the student's
    `answer`-tagged cells when ids were regenerated (Colab saves none); by
    position when the tags are gone too but the cell layout is the lab's; and
    last by content, a cell holding the stub's first line (`def fans(weight):`).
    Returns (notebook, notes, {question id: answered?}).
    """
    graded = nbformat.from_dict(json.loads(json.dumps(solution)))
    answers = [c for c in graded.cells if is_answer(c)]
    wanted = {c.id for c in answers}
    duplicates = submission.metadata.get("traindeep_duplicate_ids", {})
    matches = {}
    for c in answers:
        ids = duplicates.get(c.id, [c.id])
        candidates = [s for s in submission.cells if s.get("id") in ids and s.cell_type == c.cell_type]
        filled = [s for s in candidates if not _unanswered(s.source, c)]
        if candidates:
            matches[c.id] = (filled or candidates)[0]
    # An id match that holds only the stub yields to an answered cell tagged for the same question.
    claimed = {id(s) for s in matches.values()}
    for c in answers:
        if c.id in matches and _unanswered(matches[c.id].source, c):
            better = next((s for s in submission.cells if is_answer(s) and question_of(s) == question_of(c)
                           and s.cell_type == c.cell_type and id(s) not in claimed
                           and not _unanswered(s.source, c)), None)
            if better is not None:
                matches[c.id] = better
                claimed.add(id(better))
    taken_ids = {i for ids in duplicates.values() for i in ids} | wanted
    unmatched = [c for c in answers if c.id not in matches]
    unclaimed = [s for s in submission.cells if is_answer(s) and s.get("id") not in taken_ids]
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
        unanswered = True if student is None else _unanswered(student.source, cell)
        cell.source = stub_source(cell) if student is None else student.source
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


def _unanswered(source: str, cell) -> bool:
    return is_unanswered(source, cell.cell_type) or source.strip() == stub_source(cell).strip()


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


def _cell_report(graded, cells: list | None, question: str) -> list[str]:
    """The public checks' verdict lines and the errors of a question's cells (the student's own text, escaped)."""
    if cells is None:
        return []
    lines = []
    offset = 1  # the grader's setup cell comes first in the run
    for i, cell in enumerate(graded.cells):
        if question_of(cell) != question or not (is_answer(cell) or is_check(cell)):
            continue
        outputs = cells[i + offset] if i + offset < len(cells) and isinstance(cells[i + offset], list) else []
        for output in (o for o in outputs if isinstance(o, dict)):
            if output.get("output_type") == "error":
                lines.append(f"- error in your {'answer' if is_answer(cell) else 'check'} cell: "
                             f"`{one_line(output.get('ename'), 80)}: {one_line(output.get('evalue'), 200)}`")
            elif is_check(cell) and output.get("name") == "stdout":
                lines += [f"- public check: {one_line(line.strip(), 300)}"
                          for line in str(output.get("text", "")).splitlines() if line.strip()[:1] in ("✓", "✗")][:10]
    return lines


def grade_batch(solution, submissions, out, workers=1, timeout=600.0, cell_timeout=120.0,
                memory_gb=4.0, seed=None, sandbox=True, max_mb=20.0) -> bool:
    """Grade every submission; write OUT/grades.csv and OUT/feedback/. True when all got a row."""
    from . import sandbox as isolation

    if sandbox:
        if isolation.mode() is None:
            raise RuntimeError(isolation.describe() + " Install bubblewrap (Debian: apt-get install bubblewrap), "
                               "or pass --no-sandbox to grade anyway without isolation.")
        exposed = [Path(p).resolve() for p in [solution, *submissions]
                   if any(e == Path(p).resolve() or e in Path(p).resolve().parents
                          for e in isolation.exposed_paths())]
        if exposed:
            raise RuntimeError(f"{exposed[0]} lies inside a folder the sandbox shows to student code; "
                               "move the solution and the submissions out of it")
        print(isolation.describe())
    else:
        print("WARNING: --no-sandbox: student code runs as you, with your files, your network and every other "
              "student's run within reach. A submission can read the solution, copy or change classmates' "
              "grades, and outlive the batch. Use this only for your own test notebooks.")
    grader = Grader(solution, timeout, cell_timeout, memory_gb, seed, sandbox, max_mb)
    items = collect(submissions)
    print(f"grading {len(items)} submission(s) against {solution} (probe seed {grader.seed})")
    grader.prepare()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = list(pool.map(grader.grade, items))
    write_report(grader, outcomes, Path(out))
    for o in outcomes:
        print(f"{o.student:24s} {o.total():6g}/{grader.max_points:g}  {o.seconds:6.1f}s  {o.status}")
    print(f"wrote {Path(out) / 'grades.csv'} and {len(outcomes)} feedback file(s)")
    return len(outcomes) == len(items)
