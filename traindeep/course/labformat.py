"""The lab format: which cells are answers and checks, and what each question is worth.

A solution notebook (`solutions/NAME.ipynb`) carries, in its metadata under
`traindeep`, a list of questions:

    {"questions": [
      {"id": "q1", "title": "Xavier initialization", "points": 3,
       "probes": [{"name": "bound", "expr": "xavier_uniform_bound({fan_in}, {fan_out})",
                   "draw": {"fan_in": [8, 2048], "fan_out": [8, 2048]}, "rtol": 1e-6, "points": 1}]},
      {"id": "q5", "title": "Why did the fix work?", "points": 2, "manual": true,
       "rubric": "..."}]}

Answer cells are tagged `answer` and name their question in
`metadata.traindeep.question`; public checks are tagged `check`; cells tagged
`helper` define data and functions the probes call, and are run again right
before the probes (so an answer cannot redefine them). A probe's
`expr` is formatted with values drawn at grading time (`draw`: `[low, high]`
integers or floats, or `{"choice": [...]}`), evaluated in the student's kernel,
and judged outside it: compared with the solution's value (`rtol`, `atol`), or
by a `rule` ({"at_least": x}, {"at_most": x}, {"between": [a, b]}, {"equals": v}).
A probe with `"outputs": "image/png"` and a rule counts what the question's
answer cells displayed instead (figures, say), read from the executed notebook.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError"
TEXT_STUB = "*Your answer here.*"
RULES = ("at_least", "at_most", "between", "equals")


class LabFormatError(ValueError):
    """A solution notebook that does not follow the lab format."""


@dataclass
class Probe:
    name: str
    expr: str = ""
    points: float = 1.0
    draw: dict = field(default_factory=dict)
    rtol: float = 1e-6
    atol: float = 1e-9
    rule: dict | None = None
    outputs: str | None = None  # count this MIME type among the question's answer-cell outputs instead

    def instantiate(self, rng: random.Random) -> tuple[str, dict]:
        """The expression with its inputs drawn, and the drawn inputs."""
        drawn = {}
        for key, spec in self.draw.items():
            if isinstance(spec, dict) and "choice" in spec:
                drawn[key] = rng.choice(spec["choice"])
            elif isinstance(spec[0], int) and isinstance(spec[1], int):
                drawn[key] = rng.randint(spec[0], spec[1])
            else:
                drawn[key] = round(rng.uniform(spec[0], spec[1]), 6)
        return self.expr.format(**drawn), drawn


@dataclass
class Question:
    id: str
    title: str
    points: float
    probes: list[Probe] = field(default_factory=list)
    manual: bool = False
    rubric: str = ""


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def is_answer(cell) -> bool:
    return "answer" in _tags(cell)


def is_check(cell) -> bool:
    return "check" in _tags(cell)


def is_helper(cell) -> bool:
    """Cells that define what probes call; the grader re-runs them just before the probes."""
    return cell.cell_type == "code" and "helper" in _tags(cell)


def question_of(cell) -> str | None:
    return cell.get("metadata", {}).get("traindeep", {}).get("question")


def questions(nb) -> list[Question]:
    """Parse and validate the questions of a solution notebook."""
    spec = nb.metadata.get("traindeep", {}).get("questions")
    if not spec:
        raise LabFormatError("the notebook's metadata has no traindeep.questions list")
    result, seen = [], set()
    for q in spec:
        if q["id"] in seen:
            raise LabFormatError(f"question id {q['id']!r} appears twice")
        seen.add(q["id"])
        probes = [Probe(**p) for p in q.get("probes", [])]
        for p in probes:
            if bool(p.expr) == bool(p.outputs) or (p.outputs and not p.rule):
                raise LabFormatError(f"{q['id']}/{p.name}: a probe needs an expr, or outputs with a rule")
            if p.rule and set(p.rule) - set(RULES):
                raise LabFormatError(f"{q['id']}/{p.name}: unknown rule {p.rule}; expected one of {RULES}")
        points = q.get("points", sum(p.points for p in probes))
        if not q.get("manual") and not math.isclose(points, sum(p.points for p in probes)):
            raise LabFormatError(f"{q['id']}: points {points} differ from its probes' sum")
        result.append(Question(q["id"], q.get("title", q["id"]), points, probes,
                               bool(q.get("manual")), q.get("rubric", "")))
    ids = {q.id for q in result}
    for cell in nb.cells:
        if (is_answer(cell) or is_check(cell)) and question_of(cell) not in ids:
            raise LabFormatError(f"cell {cell.get('id')} is tagged {_tags(cell)} but names question "
                                 f"{question_of(cell)!r}; expected one of {sorted(ids)}")
    for q in result:
        if not any(is_answer(c) and question_of(c) == q.id for c in nb.cells):
            raise LabFormatError(f"question {q.id} has no answer cell")
    return result


def stub_source(cell) -> str:
    """What a student sees in place of the solution inside an answer cell."""
    markers = (BEGIN, END, CODE_STUB) if cell.cell_type == "code" else (MD_BEGIN, MD_END, TEXT_STUB)
    begin, end, stub = markers
    pattern = re.compile(rf"^([ \t]*){re.escape(begin)}.*?^[ \t]*{re.escape(end)}[^\n]*$", re.S | re.M)
    if not pattern.search(cell.source):
        raise LabFormatError(f"answer cell {cell.get('id')} lacks {begin} ... {end}")
    return pattern.sub(lambda m: "\n".join(m.group(1) + line for line in stub.splitlines()), cell.source)


def is_unanswered(source: str, cell_type: str = "code") -> bool:
    """True when an answer cell still holds the stub (or nothing)."""
    stripped = source.strip()
    if not stripped:
        return True
    if cell_type == "code":
        return "raise NotImplementedError" in source and "# YOUR CODE HERE" in source
    return stripped == TEXT_STUB


def judge(probe: Probe, value, reference) -> tuple[bool, str]:
    """Judge a probe's value outside the kernel; returns (passed, why)."""
    rule = probe.rule
    try:
        if rule:
            (kind, target), = rule.items()
            if kind == "equals":
                return value == target, f"got {_short(value)}, expected {_short(target)}"
            number = float(value)
            if not math.isfinite(number):
                return False, f"got {number}"
            ok = {"at_least": lambda: number >= target, "at_most": lambda: number <= target,
                  "between": lambda: target[0] <= number <= target[1]}[kind]()
            return ok, f"got {number:.4g}, expected {kind.replace('_', ' ')} {target}"
        return _close(value, reference, probe.rtol, probe.atol)
    except (TypeError, ValueError) as error:
        return False, f"got {_short(value)} ({error})"


def _close(value, reference, rtol, atol) -> tuple[bool, str]:
    if isinstance(reference, list):
        if not isinstance(value, list) or len(value) != len(reference):
            return False, f"expected a list of {len(reference)} values, got {_short(value)}"
        for i, (v, r) in enumerate(zip(value, reference)):
            ok, why = _close(v, r, rtol, atol)
            if not ok:
                return False, f"item {i}: {why}"
        return True, "matches"
    if isinstance(reference, (bool, str)) or reference is None:
        return value == reference, "matches" if value == reference else f"got {_short(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False, f"expected a number, got {_short(value)}"
    ok = math.isfinite(value) and math.isclose(value, reference, rel_tol=rtol, abs_tol=atol)
    return ok, "matches" if ok else f"got {value:.6g}, which differs from the expected value"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
