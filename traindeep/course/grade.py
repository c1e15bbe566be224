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
import functools
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
from typing import NamedTuple

import nbformat

from . import sandbox
from .intake import FileTooLarge, Submission, code_span, collect, one_line, read_capped
from .labformat import (
    MAX_SOURCE_CHARS,
    LabFormatError,
    Question,
    defined_names,
    forbidden_uses,
    is_answer,
    is_check,
    is_helper,
    is_unanswered,
    judge,
    lab_cell_timeout,
    question_of,
    questions,
    referenced_names,
    stub_source,
    suspicious_uses,
)
from .notebooks import NotebookError, parse_notebook, read_notebook
from .payload import PROBE_MIME
from .report import update_report, write_report

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
# What the grader reads of a probe's payload: its number. The value travels on to the judge unparsed.
PAYLOAD_HEAD = re.compile(r'\{"probe": (\d{1,6}), "(value|error)": ')
REDRAWS = 5  # new inputs tried for a probe whose drawn inputs make the solution fail it


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
    timeouts: dict = field(default_factory=dict)  # question id -> what timed out in its cells


class Scored(NamedTuple):
    """What `Grader.score` found for one run: the grader's per-question rule, shared with `labs vet`."""

    scores: dict  # question id -> points (automatic questions)
    feedback: dict  # question id -> markdown lines, heading to points
    flags: list  # why the row is SUSPICIOUS
    failed: dict  # question id -> {probe name, or "(unanswered)"/"(forbidden)": why}


class Grader:
    """Grades submissions against one solution notebook."""

    def __init__(self, solution, timeout=600.0, cell_timeout=None, memory_gb=4.0, seed=None, sandbox=True,
                 max_mb=20.0, judge_timeout=None, release_details=False):
        self.solution_path = Path(solution)
        self.solution = read_notebook(self.solution_path)
        self.questions: list[Question] = questions(self.solution)
        # The lecturer's --cell-timeout wins; else the lab's own limit (120 s unless its metadata raises it).
        self.cell_timeout = cell_timeout if cell_timeout is not None else lab_cell_timeout(self.solution)
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
        # The judge computes one probe's value at a time; a value may retrain what a cell trained once, twice.
        self.judge_timeout = judge_timeout if judge_timeout is not None else 2 * self.cell_timeout
        self.release_details = release_details  # show the drawn inputs and expected values in the feedback
        # The names each question's answer must define: those its probes call that its solution cells define.
        self.required = {q.id: frozenset().union(*(_names_called(p.call) for p in self.probes if p.question == q.id))
                         & defined_names(_answers_of(self.solution, q.id)) for q in self.questions}
        self.withheld = _withheld_modules(self.questions)
        self.stubs = {c.id: stub_source(c) for c in self.solution.cells if is_answer(c)}
        self.reference = None
        self.redrawn: list[str] = []  # what prepare() drew again, for the terminal and the feedback
        self.dropped: list[tuple[DrawnProbe, str]] = []  # probes no draw let the solution pass, and why
        # Values the judge computed, by (value expression, digest of the payload): the same raw result gets
        # the same value, so classmates with one answer (or vetting variants that leave a question alone)
        # do not make the judge retrain what it trained once. Shared by copies of this grader.
        self._judged: dict = {}
        self._judged_lock = threading.Lock()

    @property
    def max_points(self) -> float:
        return sum(q.points for q in self.questions if not q.manual) - sum(p.probe.points for p, _ in self.dropped)

    # -- the instructor's reference values ---------------------------------------------------------
    def prepare(self) -> None:
        """Run the solution once to learn the reference values.

        A probe whose drawn inputs make the solution fail it gets new inputs: up to REDRAWS draws of them,
        all tried in one more run of the solution. A probe that no draw lets the solution pass is dropped
        for this batch (said in the terminal, every row's status and every feedback file), and the rest
        is graded. A solution that does not run cleanly is refused."""
        graded, _, _ = splice(self.solution, self.solution)
        for q in self.questions:
            used = forbidden_uses(_answers_of(graded, q.id), q.forbid, self.helpers)
            if used:
                raise LabFormatError(f"{q.id}: the solution's own answer uses {used}, which the question forbids")
        evaluation = self._evaluate(graded)
        if evaluation.problems or _raised(self._probed(graded)[0], evaluation.cells):
            raise RuntimeError(f"the solution {self.solution_path} fails to run: "
                               + "; ".join(evaluation.problems + _raised(self._probed(graded)[0], evaluation.cells)))
        self.reference = {k: v["value"] for k, v in evaluation.values.items() if "value" in v}
        failing = {p.key: why for p in self.probes for why in [_solution_fails(p, evaluation.values.get(p.key))]
                   if why}
        if failing:
            self._redraw(graded, failing)

    def _redraw(self, graded, failing: dict) -> None:
        """Try REDRAWS new draws of each failing probe in one run; keep the first the solution passes."""
        candidates = {}  # failing key -> [candidate DrawnProbe]
        for probe in (p for p in self.probes if p.key in failing and p.probe.draw):
            rng = random.Random(f"{self.seed}/{probe.key}/redraw")
            candidates[probe.key] = [DrawnProbe(probe.question, f"{probe.name}#redraw{i}",
                                                *probe.probe.instantiate(rng), probe.probe) for i in range(REDRAWS)]
        values = {}
        if candidates:
            kept, self.probes = self.probes, [c for cs in candidates.values() for c in cs]
            try:
                evaluation = self._evaluate(graded)
            finally:
                self.probes = kept
            values = evaluation.values if not evaluation.problems else {}
        for probe in [p for p in self.probes if p.key in failing]:
            shown = ", ".join(f"{k}={v}" for k, v in probe.drawn.items())
            first = f"{probe.question}/{probe.name}: the solution fails it" + (f" with {shown}" if shown else "") \
                + f" ({failing[probe.key]})"
            good = next((c for c in candidates.get(probe.key, [])
                         if not _solution_fails(c, values.get(c.key))), None)
            if good is None:
                tried = f"{REDRAWS} new draws failed too" if probe.probe.draw else "it draws no inputs"
                why = f"{first}; {tried}"
                self.probes.remove(probe)
                self.dropped.append((probe, why))
                print(f"WARNING: probe {probe.question}/{probe.name} DROPPED for this batch ({why}); "
                      f"its {probe.probe.points:g} point(s) count for no one. Fix the probe.", file=sys.stderr)
                continue
            probe.call, probe.value, probe.drawn = good.call, good.value, good.drawn
            self.reference[probe.key] = values[good.key]["value"]
            now = ", ".join(f"{k}={v}" for k, v in good.drawn.items())
            self.redrawn.append(f"{first}; redrawn: {now}")
            print(f"redrew {self.redrawn[-1]}", file=sys.stderr)

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
        if submission.flag:
            outcome.status = submission.flag if outcome.status == "ok" else f"{outcome.status}; {submission.flag}"
        outcome.status = one_line(outcome.status, 400)
        outcome.seconds = time.monotonic() - start
        return outcome

    def _grade(self, submission: Submission, outcome: Outcome) -> None:
        data = read_capped(submission.path, self.max_bytes)
        student = parse_notebook(data, submission.path.name, repair_ids=True)
        graded, notes, answered = splice(self.solution, student)
        refused = _refuse_oversized(graded, answered, self.stubs)
        notes += refused
        if not any(answered.values()):
            outcome.status = "; ".join(["answers missing: no answer cell holds an answer"] + refused)
            outcome.feedback.append("No answer was found: every answer cell is empty, too large, or still holds "
                                    "the `raise NotImplementedError` stub.")
            return
        evaluation = self._evaluate(graded)
        outcome.run_seconds = evaluation.run_seconds
        notes += evaluation.problems
        notes += [f"probe {p.question}/{p.name} DROPPED for this batch (the solution failed it)"
                  for p, _ in self.dropped]
        scored = self.score(graded, answered, evaluation)
        for q in self.questions:
            if q.manual:
                outcome.manual[q.id] = _answers_of(graded, q.id) if answered[q.id] else ""
                outcome.feedback += [f"## {q.id}: {q.title}", "Marked by hand (see the rubric).", ""]
                continue
            outcome.scores[q.id] = scored.scores[q.id]
            outcome.feedback += scored.feedback[q.id]
        if scored.flags:
            notes.append("SUSPICIOUS: " + "; ".join(scored.flags))
        if notes:
            outcome.status = "; ".join(notes)

    def score(self, graded, answered: dict, evaluation: Evaluation) -> Scored:
        """Each automatic question's points, feedback and failed probes, and the run's flags.

        A question scores the points of the probes it passes, and 0 when it is unanswered (its cells hold
        only the stub, or define none of the names its probes call) or when an answer cell its probes
        reach uses a helper it forbids. A probe counts only if the question's own cells define the names
        it calls, so neither another question's cell nor a forged output can answer it. Answer cells that
        reach code by computed names or reach into IPython's hooks are flagged for a marker."""
        answers = [c for c in graded.cells if is_answer(c) and c.cell_type == "code"]
        defined = {id(c): defined_names(c.source) for c in answers}
        odd = {}
        for cell in answers:
            for use in suspicious_uses(cell.source):
                odd.setdefault(question_of(cell), []).append(use)
        flags = list(evaluation.suspicious)
        flags += [f"the {q} answer uses {', '.join(dict.fromkeys(uses))}" for q, uses in odd.items()]
        scores, feedback, failed = {}, {}, {}
        for q in (q for q in self.questions if not q.manual):
            own = set().union(*(defined[id(c)] for c in answers if question_of(c) == q.id))
            needed = self.required.get(q.id, frozenset())
            stubbed = not answered.get(q.id, False)
            undefined = not stubbed and bool(needed) and not needed & own
            forbidden = self._forbidden(graded, q, answers, defined) if not (stubbed or undefined) else []
            lines, fails = [f"## {q.id}: {q.title}"], {}
            if stubbed:
                lines.append("Not answered.")
                fails["(unanswered)"] = "the answer is missing"
            elif undefined:
                lines.append(f"Not answered: your answer cell defines none of {', '.join(sorted(needed))}, "
                             "which this question's probes call.")
                fails["(unanswered)"] = f"defines none of {', '.join(sorted(needed))}"
            if forbidden:
                lines.append(f"This question asks you to write it yourself; your answer uses {', '.join(forbidden)}, "
                             "so it scores 0.")
                fails["(forbidden)"] = f"uses {', '.join(forbidden)}"
            if q.id in odd:
                lines.append(f"Your answer uses {', '.join(dict.fromkeys(odd[q.id]))}: a marker will look at it.")
            if q.id in evaluation.timeouts:
                lines.append(f"Stopped: {evaluation.timeouts[q.id]}.")
            points, passed = 0.0, 0
            for probe in (p for p in self.probes if p.question == q.id):
                missing = sorted((_names_called(probe.call) & needed) - own)
                if missing:
                    ok, why = False, f"not run: your {q.id} answer cell does not define {', '.join(missing)}"
                else:
                    ok, why = self._verdict(probe, evaluation.values.get(probe.key))
                passed += ok
                points += probe.probe.points if ok else 0.0
                if not ok:
                    fails[probe.name] = why
                lines.append(self._probe_line(probe, ok, why))
            if stubbed and passed:
                flags.append(f"{q.id} is unanswered but {passed} of its probes passed")
            for probe, why in (d for d in self.dropped if d[0].question == q.id):
                lines.append(f"- (not graded) {probe.name}: dropped for this batch, its {probe.probe.points:g} "
                             f"point(s) count for no one ({why})")  # its inputs grade no one: no need to hide them
            redrawn = [note for note in self.redrawn if note.startswith(q.id + "/")]
            lines += [f"- (inputs drawn again) {note}" for note in redrawn] if self.release_details else \
                [f"- {len(redrawn)} probe(s) got new inputs for this batch (the solution failed the first ones)"] \
                if redrawn else []
            if stubbed or undefined or forbidden:
                points = 0.0
            scores[q.id] = round(points, 4)
            lines += _cell_report(graded, evaluation.cells, q.id)
            feedback[q.id] = lines + [f"**{points:g} / {q.points:g} points**", ""]
            failed[q.id] = fails
        return Scored(scores, feedback, flags, failed)

    def _probe_line(self, probe: DrawnProbe, ok: bool, why: str) -> str:
        """One feedback line: the probe, its verdict, its points. The drawn inputs only with release_details
        (hidden probes stay hidden until the lecturer releases them). A failed probe shows the value it
        expected where that gives nothing away: with release_details, and for a probe that draws its inputs
        (its value belongs to inputs the student never sees, drawn anew for every batch). A probe on fixed
        inputs expects the same value in every batch, which an answer could simply return: it stays hidden."""
        inputs = ", ".join(f"{k}={v}" for k, v in probe.drawn.items()) if self.release_details else ""
        differs = ", which differs from the expected value"
        if not ok and (self.release_details or probe.probe.draw) and why.endswith(differs):
            expected = (self.reference or {}).get(probe.key)
            for i in re.findall(r"item (\d+): ", why[:-len(differs)]):  # _close's path into nested lists
                expected = expected[int(i)] if isinstance(expected, list) and int(i) < len(expected) else None
            if isinstance(expected, (int, float)) and not isinstance(expected, bool):
                why = why[:-len(differs)] + f", expected {expected:.6g}"
        elif not ok and not self.release_details:
            why = re.split(r", expected\b|" + differs, why)[0]
        return (f"- {'✓' if ok else '✗'} {probe.name}" + (f" ({inputs})" if inputs else "")
                + f": {'passed' if ok else one_line(why, 400)} [{probe.probe.points if ok else 0:g}/"
                f"{probe.probe.points:g}]")

    def _forbidden(self, graded, q: Question, answers: list, defined: dict) -> list[str]:
        """The helpers q forbids that are used by its answer cells or by any answer cell that defines a name
        its probes reach (directly, or through the functions those cells call): all cells share one kernel."""
        if not q.forbid:
            return []
        reach = set().union(*(_names_called(p.call) for p in self.probes if p.question == q.id))
        chosen = [c for c in answers if question_of(c) == q.id]
        for cell in chosen:
            reach |= referenced_names(cell.source)
        grew = True
        while grew:
            grew = False
            for cell in answers:
                if all(cell is not c for c in chosen) and defined[id(cell)] & reach:
                    chosen.append(cell)
                    reach |= referenced_names(cell.source)
                    grew = True
        context = self.helpers + [c.source for c in answers]
        return sorted({name for cell in chosen for name in forbidden_uses(cell.source, q.forbid, context)})

    def _verdict(self, probe: DrawnProbe, payload) -> tuple[bool, str]:
        if payload is None:
            return False, "did not run"
        if "error" in payload:
            return False, f"raised {code_span(payload['error'], 300)}"
        ok, why = judge(probe.probe, payload["value"], (self.reference or {}).get(probe.key))
        return ok, one_line(why, 400)

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
        # Probes with the same call (several checks of one result, or one probe's many draws when only its
        # judged value draws) share one cell: its result is computed and sent once.
        probe_cells, cell_of = {}, {}
        for probe in (p for p in self.probes if p.call):
            if probe.call not in cell_of:
                i = len(cell_of)
                cell_of[probe.call] = len(nb.cells)
                probe_cells[len(nb.cells)] = (i, [])
                nb.cells.append(nbformat.v4.new_code_cell(PROBE_SOURCE.format(index=i, call=probe.call),
                                                          id=f"probe-{i}"))
            probe_cells[cell_of[probe.call]][1].append(probe.key)
        return nb, probe_cells

    def _evaluate(self, graded) -> Evaluation:
        nb, probe_cells = self._probed(graded)
        tasks: queue.Queue = queue.Queue()
        judged: dict = {}
        payloads: dict = {}

        def judge_input():
            yield (json.dumps({"helpers": self.helpers}) + "\n").encode()
            # One task at a time: a header line, then the payload's text as the run emitted it (unparsed).
            for key in iter(tasks.get, None):
                text = payloads[key].pop("text")
                yield (json.dumps({"key": key, "value": self._probe(key).value}) + "\n").encode()
                for start in range(0, len(text), 1 << 20):  # no second whole copy of a large payload
                    yield text[start:start + (1 << 20)].encode()
                yield b"\n"

        def run_judge():
            # Its clock starts with the student's run, which it waits for; then each value has judge_timeout.
            calls = sum(1 for p in self.probes if p.call)
            limits = dataclasses.replace(self.limits, timeout=self.limits.timeout + self.judge_timeout * calls)
            try:
                judged["run"] = sandbox.run([sys.executable, "-m", "traindeep.course.judge",
                                             str(self.judge_timeout)], judge_input(), limits, self.sandbox)
            except Exception as error:  # e.g. no free uid: the caller must hear it as it is
                judged["error"] = error

        judging = threading.Thread(target=run_judge, daemon=True)
        judging.start()
        cells, problems, suspicious, timeouts = None, [], [], {}
        try:
            run = sandbox.run([sys.executable, "-m", "traindeep.course.runner", str(self.cell_timeout)],
                              nbformat.writes(nb).encode(), self.limits, self.sandbox, hide=self.withheld)
            cells, problems, timeouts = self._read_run(run, nb)
            if cells is not None:
                payloads.update(_probe_payloads(cells, probe_cells))
                suspicious = payloads.pop("__flags__")
        finally:
            ready, known, memo, digests = [], {}, {}, {}
            for key in (key for key, p in payloads.items() if "text" in p):
                text = payloads[key]["text"]  # probes of one call share this string: digest it once
                if id(text) not in digests:  # the string is kept with its digest, so its id stays its own
                    digests[id(text)] = (text, hashlib.sha256(text.encode()).hexdigest())
                memo[key] = (self._probe(key).value, digests[id(text)][1])
                with self._judged_lock:
                    known_value = self._judged.get(memo[key])
                if known_value is not None:
                    known[key] = known_value
                    del payloads[key]["text"]
                else:
                    ready.append(key)
                    tasks.put(key)
            tasks.put(None)
        judging.join()
        if "error" in judged:
            raise judged["error"]
        values = {key: p for key, p in payloads.items() if "error" in p}
        fresh = self._read_judge(judged.get("run"), ready)
        with self._judged_lock:  # only values: an error may be a timeout on a busy machine
            self._judged.update({memo[key]: value for key, value in fresh.items() if "value" in value})
        values.update(fresh)
        values.update(known)
        for probe in (p for p in self.probes if p.probe.outputs and cells is not None):
            values[probe.key] = {"value": float(sum(
                probe.probe.outputs in output.get("data", {})
                for cell, outputs in zip(nb.cells, cells) if is_answer(cell) and question_of(cell) == probe.question
                for output in outputs if isinstance(output, dict) and isinstance(output.get("data"), dict)))}
        return Evaluation(values, problems, cells, suspicious, run.seconds, timeouts)

    def _probe(self, key: str) -> DrawnProbe:
        return next(p for p in self.probes if p.key == key)

    def _read_run(self, run: sandbox.Completed, nb) -> tuple[list | None, list[str], dict]:
        """Each cell's outputs, the problems of a run, and {question: what timed out in its cells}, read from
        its untrusted output."""
        where = _where(run.stderr, nb)
        question = _where_question(run.stderr, nb)
        stopped = {"time": f"stopped after the total time limit of {self.limits.timeout:.0f} s{where}",
                   "wall": f"stopped after {2 * self.limits.timeout:.0f} s of wall time, twice the time limit "
                           f"(it waited more than it computed){where}",
                   "memory": f"stopped: used more than {self.limits.memory_gb:g} GiB of memory{where}",
                   "output": f"stopped: wrote more than {self.limits.output_mb} MB of output{where}"}
        if run.killed in stopped:
            return None, [stopped[run.killed]], ({question: stopped[run.killed]} if question else {})
        try:
            result = json.loads(run.stdout)
            run.stdout = b""  # parsed: the probe payloads now live in `result` alone
            cells, events = result["cells"], result["events"]
            if not isinstance(cells, list) or len(cells) != len(nb.cells) or not isinstance(events, list):
                raise ValueError("wrong shape")
        except (ValueError, KeyError, TypeError, RecursionError):
            return None, [f"the run ended unexpectedly{where}"], {}
        problems, timeouts = [], {}
        for event in events:
            cell = event.get("cell") if isinstance(event, dict) else None
            name = describe(nb.cells[cell]) if isinstance(cell, int) and 0 <= cell < len(nb.cells) else "a cell"
            kind = event.get("event") if isinstance(event, dict) else None
            if kind == "cell_timeout":
                problems.append(f"{name} took longer than {self.cell_timeout:.0f} s and was interrupted")
                if isinstance(cell, int) and 0 <= cell < len(nb.cells) and question_of(nb.cells[cell]):
                    timeouts[question_of(nb.cells[cell])] = problems[-1]
            elif kind == "kernel_died":
                problems.append(f"the kernel died (while running {name}); cells after it did not run")
            elif kind == "run_failed":
                problems.append(f"the run failed while running {name}")
        return cells, list(dict.fromkeys(problems)), timeouts

    def _read_judge(self, run: sandbox.Completed | None, keys: list[str]) -> dict:
        try:
            values = json.loads(run.stdout.decode().strip().splitlines()[-1])
            return {k: values[k] for k in keys if isinstance(values.get(k), dict)}
        except (AttributeError, ValueError, IndexError, KeyError, TypeError):
            why = "the judge did not finish" if run is None or run.killed else \
                f"the judge failed: {one_line(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else '?')}"
            return {k: {"error": why} for k in keys}


def _raised(nb, cells: list | None) -> list[str]:
    """'the q1 answer cell raised NameError: ...' for each cell of a run (not a probe) that raised. A check
    cell that reaches a module the lab withholds from every run (traindeep.probes) does not count."""
    found = []
    for cell, outputs in zip(nb.cells, cells or []):
        errors = [o for o in outputs if isinstance(o, dict) and o.get("output_type") == "error"
                  and not (is_check(cell) and o.get("ename") == "Withheld")] \
            if isinstance(outputs, list) and not cell.get("id", "").startswith("probe-") else []
        found += [f"{describe(cell)} raised {one_line(e.get('ename'), 80)}: {one_line(e.get('evalue'), 200)}"
                  for e in errors[:1]]
    return found


def _solution_fails(probe: DrawnProbe, payload) -> str:
    """Why the solution's own run fails `probe` ('' when it passes): an error, or a rule it breaks."""
    if payload is None or "error" in payload:
        return f"{(payload or {}).get('error', 'did not run')}"
    if probe.probe.rule:
        ok, why = judge(probe.probe, payload["value"], None)
        return "" if ok else why
    return ""


def sandbox_limits(timeout: float, memory_gb: float) -> sandbox.Limits:
    return sandbox.Limits(timeout=timeout, memory_gb=memory_gb)


def _probe_payloads(cells: list, probe_cells: dict) -> dict:
    """{probe key: {"text": the payload as emitted} or {"error": ...}, "__flags__": [...]} from the probe cells'
    outputs. Only a payload's head is read here (its probe number); the judge reads the rest. Each text is
    taken out of `cells`, so one copy of it is kept."""
    payloads, tampered = {}, []
    for index, (number, keys) in probe_cells.items():
        outputs = cells[index] if isinstance(cells[index], list) else []
        found = [o["data"] for o in outputs
                 if isinstance(o, dict) and isinstance(o.get("data"), dict) and PROBE_MIME in o["data"]]
        texts = [data.pop(PROBE_MIME) for data in found]
        errors = [o for o in outputs if isinstance(o, dict) and o.get("output_type") == "error"]
        head = PAYLOAD_HEAD.match(texts[0]) if texts and isinstance(texts[0], str) else None
        if not texts:
            payload = {"error": "did not return (the probe cell was interrupted or failed)"
                       if errors else "did not return a result"}
        elif len(texts) != 1 or head is None or int(head.group(1)) != number:
            payload = {"error": "its result was tampered with"}
            tampered += [key.split("@")[0] for key in keys]
        elif head.group(2) == "value":
            payload = {"text": texts[0]}
        else:
            payload = {"error": _emitted_error(texts[0])}
        for key in keys:  # the probes of one call share its text (one string, not copies)
            payloads[key] = dict(payload)
    payloads["__flags__"] = [f"probe output tampered with ({', '.join(tampered)})"] if tampered else []
    return payloads


def _emitted_error(text: str) -> str:
    """The error message of an emitted error payload (`emit` caps it at 300 characters)."""
    try:
        return str(json.loads(text[:2000])["error"])[:300] if len(text) <= 2000 else "an unreadable error"
    except (ValueError, KeyError, TypeError, RecursionError):
        return "an unreadable error"


@functools.lru_cache(maxsize=4096)
def _names_called(call: str) -> frozenset:
    """The plain names a probe's call expression reads."""
    return frozenset(referenced_names(call))


def _withheld_modules(questions) -> tuple:
    """Module files of the package that a question forbids (`traindeep.probes` -> `probes.py`): a student's
    run gets a placeholder instead, so neither an alias nor a computed name can reach them."""
    found = []
    for q in questions:
        for name in q.forbid:
            parts = name.split(".")
            if parts[0] == "traindeep" and len(parts) > 1:
                module = "/".join(parts[1:]) + ".py"
                if (sandbox.PACKAGE / module).is_file():
                    found.append(module)
    return tuple(dict.fromkeys(found))


def _refuse_oversized(graded, answered: dict, stubs: dict) -> list[str]:
    """Answer cells over MAX_SOURCE_CHARS get the stub back (not run, not parsed); the notes that say so."""
    notes = []
    for cell in graded.cells:
        if is_answer(cell) and len(cell.source) > MAX_SOURCE_CHARS:
            notes.append(f"the {question_of(cell)} answer cell is over {MAX_SOURCE_CHARS // 1000} KB and was "
                         "not graded")
            cell.source = stubs[cell.id]
            q = question_of(cell)
            answered[q] = any(not is_unanswered(c.source, c.cell_type, stubs[c.id]) for c in graded.cells
                              if is_answer(c) and question_of(c) == q)
    return notes


def _where(stderr: str, nb) -> str:
    """' (while running the q1 answer cell)', from the last cell index the runner announced."""
    found = re.findall(r"^@cell (\d+)$", stderr, re.M)
    if not found or not int(found[-1]) < len(nb.cells):
        return ""
    return f" (while running {describe(nb.cells[int(found[-1])])})"


def _where_question(stderr: str, nb) -> str | None:
    """The question of the answer or check cell the runner announced last, if it was one."""
    found = re.findall(r"^@cell (\d+)$", stderr, re.M)
    if not found or not int(found[-1]) < len(nb.cells):
        return None
    cell = nb.cells[int(found[-1])]
    return question_of(cell) if is_answer(cell) or is_check(cell) else None


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
            if output.get("output_type") == "error" and is_check(cell) and output.get("ename") == "Withheld":
                lines.append("- public check not run while grading: it uses a module this lab withholds")
            elif output.get("output_type") == "error":
                lines.append(f"- error in your {'answer' if is_answer(cell) else 'check'} cell: "
                             + code_span(f"{one_line(output.get('ename'), 80)}: {one_line(output.get('evalue'), 200)}"))
            elif is_check(cell) and output.get("name") == "stdout":
                lines += [f"- public check: {one_line(line.strip(), 300)}"
                          for line in str(output.get("text", "")).splitlines() if line.strip()[:1] in ("✓", "✗")][:10]
    return lines


def grade_batch(solution, submissions, out, workers=1, timeout=600.0, cell_timeout=None,
                memory_gb=4.0, seed=None, sandbox=True, max_mb=20.0, judge_timeout=None,
                release_details=False, only=None) -> bool:
    """Grade every submission; write OUT/grades.csv and OUT/feedback/. True when all got a row.

    With `only`, regrade the one student of that name into the existing OUT: their row and feedback file
    change, nothing else does, and OUT/regrade.log records the change."""
    from . import sandbox as isolation

    if sandbox:
        if isolation.mode() is None:
            raise RuntimeError(isolation.describe() + " Install bubblewrap (Debian: apt-get install bubblewrap), "
                               "or pass --no-sandbox to grade anyway without isolation.")
        exposed = [Path(p).resolve() for p in [solution, *submissions, out]
                   if any(e == Path(p).resolve() or e in Path(p).resolve().parents
                          for e in isolation.exposed_paths())]
        if exposed:
            raise RuntimeError(f"{exposed[0]} lies inside a folder the sandbox shows to student code; "
                               "move the solution, the submissions and the output folder out of it")
        print(isolation.describe())
    else:
        print("WARNING: --no-sandbox: student code runs as you, with your files, your network and every other "
              "student's run within reach. A submission can read the solution, copy or change classmates' "
              "grades, and outlive the batch. Use this only for your own test notebooks.")
    grader = Grader(solution, timeout, cell_timeout, memory_gb, seed, sandbox, max_mb, judge_timeout,
                    release_details)
    items = collect(submissions)
    if only is not None:
        if not (Path(out) / "grades.csv").is_file():
            raise RuntimeError(f"--only regrades into an existing output folder, and {Path(out) / 'grades.csv'} "
                               "does not exist; grade the whole batch first")
        chosen = [s for s in items if s.student == only]
        if not chosen:
            raise RuntimeError(f"--only {only}: no submission is named {only}; the names are "
                               + ", ".join(s.student for s in items[:20]) + (" ..." if len(items) > 20 else ""))
        items = chosen
    print(f"grading {len(items)} submission(s) against {solution} (probe seed {grader.seed})")
    grader.prepare()
    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = list(pool.map(grader.grade, items))
    if only is not None:
        print(update_report(grader, outcomes[0], Path(out), grader.seed))
    else:
        write_report(grader, outcomes, Path(out))
    for o in outcomes:
        print(f"{o.student:24s} {o.total():6g}/{grader.max_points:g}  {o.seconds:6.1f}s  {o.status}")
    print(f"wrote {Path(out) / 'grades.csv'} and {len(outcomes)} feedback file(s)")
    return len(outcomes) == len(items)
