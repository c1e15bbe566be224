"""The lab format: which cells are answers and checks, and what each question is worth.

A solution notebook (`solutions/NAME.ipynb`) carries, in its metadata under
`traindeep`, a list of questions:

    {"questions": [
      {"id": "q1", "title": "Xavier initialization", "points": 3, "forbid": ["torch.nn.init"],
       "probes": [{"name": "bound", "call": "xavier_uniform_bound({fan_in}, {fan_out})",
                   "draw": {"fan_in": [8, 2048], "fan_out": [8, 2048]}, "rtol": 1e-6, "points": 1},
                  {"name": "fill", "call": "xavier_uniform_(torch.empty({fan_out}, {fan_in}))",
                   "value": "result.std() / math.sqrt(2 / ({fan_in} + {fan_out}))",
                   "rule": {"between": [0.95, 1.05]}, "points": 1}]},
      {"id": "q5", "title": "Why did the fix work?", "points": 2, "manual": true,
       "rubric": "..."}]}

Answer cells are tagged `answer` and name their question in
`metadata.traindeep.question`; public checks are tagged `check`; cells tagged
`helper` define data and functions; the grader runs them again right before
the probes (so an answer cannot redefine them) and runs them, too, on the
trusted side.

A probe has two halves. Its `call` runs in the student's kernel and returns
raw data: the student's function applied to inputs drawn at grading time
(`draw`: `[low, high]` integers or floats, or `{"choice": [...]}`), or a
variable the question asked for. Its `value` (default: `result`) is computed
from that data by the grader's trusted judge, a process that never runs
student code, with NumPy, torch, math and the helper cells at hand (arrays
and tensors arrive as NumPy arrays). The value is compared with the
solution's (`rtol`, `atol`) or judged by a `rule` ({"at_least": x},
{"at_most": x}, {"between": [a, b]}, {"equals": v}). A probe with
`"outputs": "image/png"` and a rule counts what the question's answer cells
displayed instead. A question's `forbid` lists modules or functions its
answer cells may not use (a lab that asks for an initializer forbids
`torch.nn.init`); an answer that uses one scores 0 for that question.
"""

from __future__ import annotations

import math
import random
import re
import threading
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
    call: str = ""  # runs in the student's kernel; its result is raw data
    value: str = "result"  # runs in the trusted judge, with `result` bound to that data
    points: float = 1.0
    draw: dict = field(default_factory=dict)
    rtol: float = 1e-6
    atol: float = 1e-9
    rule: dict | None = None
    outputs: str | None = None  # count this MIME type among the question's answer-cell outputs instead

    def instantiate(self, rng: random.Random) -> tuple[str, str, dict]:
        """The call and value expressions with their inputs drawn, and the drawn inputs."""
        drawn = {}
        for key, spec in self.draw.items():
            if isinstance(spec, dict) and "choice" in spec:
                drawn[key] = rng.choice(spec["choice"])
            elif isinstance(spec[0], int) and isinstance(spec[1], int):
                drawn[key] = rng.randint(spec[0], spec[1])
            else:
                drawn[key] = round(rng.uniform(spec[0], spec[1]), 6)
        return self.call.format(**drawn), self.value.format(**drawn), drawn


@dataclass
class Question:
    id: str
    title: str
    points: float
    probes: list[Probe] = field(default_factory=list)
    manual: bool = False
    rubric: str = ""
    forbid: list[str] = field(default_factory=list)


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
        try:
            probes = [Probe(**p) for p in q.get("probes", [])]
        except TypeError as error:
            raise LabFormatError(f"{q['id']}: a probe has {error}; expected the keys of "
                                 "traindeep.course.labformat.Probe") from None
        for p in probes:
            if bool(p.call) == bool(p.outputs) or (p.outputs and not p.rule):
                raise LabFormatError(f"{q['id']}/{p.name}: a probe needs a call, or outputs with a rule")
            for text in (p.call, p.value) if p.call else ():
                try:
                    compile(text.format(**{k: 1 for k in p.draw}), p.name, "eval")
                except (SyntaxError, KeyError, IndexError, ValueError) as error:
                    raise LabFormatError(f"{q['id']}/{p.name}: {text!r} is not an expression ({error})") from None
            if p.rule and set(p.rule) - set(RULES):
                raise LabFormatError(f"{q['id']}/{p.name}: unknown rule {p.rule}; expected one of {RULES}")
        points = q.get("points", sum(p.points for p in probes))
        if not q.get("manual") and not math.isclose(points, sum(p.points for p in probes)):
            raise LabFormatError(f"{q['id']}: points {points} differ from its probes' sum")
        unknown = set(q) - {"id", "title", "points", "probes", "manual", "rubric", "forbid"}
        if unknown:
            raise LabFormatError(f"{q['id']}: unknown key(s) {sorted(unknown)}")
        result.append(Question(q["id"], q.get("title", q["id"]), points, probes,
                               bool(q.get("manual")), q.get("rubric", ""), list(q.get("forbid", []))))
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


# -- declared mistakes: what a lab's classic errors must cost, checked by `labs vet` ---------------------
KINDS = ("mistake", "alternative", "delegation")
DEFAULT_CELL_TIMEOUT = 120.0


@dataclass
class Edit:
    cell: str  # the answer cell's id
    replace: list = field(default_factory=list)  # [[old, new], ...], applied in turn to the solution's source
    source: str | None = None  # or the cell's whole new source


@dataclass
class Mistake:
    """A variant of the solution and the points it must get: a classic mistake, a delegation to a forbidden
    helper, or a valid alternative answer that keeps full marks."""

    name: str
    kind: str
    edits: list[Edit]
    expect: dict  # question id -> points; questions not named keep full marks
    note: str = ""

    def apply(self, nb):
        """A copy of the solution `nb` with this variant's edits made."""
        import json

        import nbformat

        patched = nbformat.from_dict(json.loads(json.dumps(nb)))
        cells = {c.get("id"): c for c in patched.cells}
        for edit in self.edits:
            cell = cells[edit.cell]
            source = cell.source if edit.source is None else edit.source
            for old, new in edit.replace:
                if old not in source:
                    raise LabFormatError(f"mistake {self.name!r}: cell {edit.cell} does not contain {_short(old)}")
                source = source.replace(old, new)
            cell.source = source
        return patched


def mistakes(nb) -> list[Mistake]:
    """Parse and validate `metadata.traindeep.mistakes` of a solution notebook.

    Each entry: {"name", "kind": mistake | alternative | delegation, "note" (optional),
    "patch": one edit or a list of them, each {"cell": ANSWER_CELL_ID or "question": QID,
    "replace": [OLD, NEW] or [[OLD, NEW], ...]} or {..., "source": WHOLE_NEW_SOURCE},
    "expect": {question id: points or "full"}}. Questions it does not name must keep full marks.
    """
    spec = nb.metadata.get("traindeep", {}).get("mistakes", [])
    if not isinstance(spec, list):
        raise LabFormatError("traindeep.mistakes must be a list")
    by_id = {q.id: q for q in questions(nb)}
    answers = {c.get("id"): c for c in nb.cells if is_answer(c)}
    result, seen = [], set()
    for i, entry in enumerate(spec):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise LabFormatError(f"mistake #{i + 1} needs a name of letters, digits, '_', '.' or '-'; got {name!r}")
        where = f"mistake {name!r}"
        if name in seen:
            raise LabFormatError(f"{where} is declared twice")
        seen.add(name)
        unknown = set(entry) - {"name", "kind", "patch", "expect", "note"}
        if unknown:
            raise LabFormatError(f"{where}: unknown key(s) {sorted(unknown)}; expected name, kind, patch, expect, note")
        kind = entry.get("kind", "mistake")
        if kind not in KINDS:
            raise LabFormatError(f"{where}: kind {kind!r} is not one of {KINDS}")
        edits = [_edit(where, e, answers, by_id) for e in _as_list(entry.get("patch"))]
        if not edits:
            raise LabFormatError(f"{where}: needs a patch of at least one answer cell")
        expect = _expectations(where, entry.get("expect", {}), by_id)
        lost = {q: p for q, p in expect.items() if p < by_id[q].points}
        if kind == "alternative" and lost:
            raise LabFormatError(f"{where}: an alternative keeps full marks, but expect takes points "
                                 f"from {sorted(lost)}")
        if kind != "alternative" and not lost:
            raise LabFormatError(f"{where}: a {kind} must cost points on some question; its expect costs none")
        if kind == "delegation" and not any(p == 0 and by_id[q].forbid for q, p in lost.items()):
            raise LabFormatError(f"{where}: a delegation must score 0 on a question that forbids helpers")
        mistake = Mistake(name, kind, edits, expect, str(entry.get("note", "")))
        patched = mistake.apply(nb)  # every OLD must be found, in order
        if all(patched.cells[j].source == c.source for j, c in enumerate(nb.cells)):
            raise LabFormatError(f"{where}: its patch changes nothing")
        result.append(mistake)
    return result


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _edit(where, spec, answers, by_id) -> Edit:
    if not isinstance(spec, dict) or set(spec) - {"cell", "question", "replace", "source"}:
        raise LabFormatError(f"{where}: a patch is {{'cell' or 'question', 'replace' or 'source'}}; got {spec!r}")
    cell = spec.get("cell")
    if cell is None and "question" in spec:
        if spec["question"] not in by_id:
            raise LabFormatError(f"{where}: unknown question {spec['question']!r}; expected one of {sorted(by_id)}")
        found = [i for i, c in answers.items() if question_of(c) == spec["question"]]
        if len(found) != 1:
            raise LabFormatError(f"{where}: question {spec['question']} has {len(found)} answer cells; name one by "
                                 f"'cell' ({found})")
        cell = found[0]
    if cell not in answers:
        raise LabFormatError(f"{where}: unknown cell id {cell!r}; the answer cells are {sorted(answers)}")
    replace = spec.get("replace", [])
    if len(replace) == 2 and all(isinstance(r, str) for r in replace):
        replace = [replace]
    if not all(isinstance(r, list) and len(r) == 2 and all(isinstance(s, str) for s in r) for r in replace):
        raise LabFormatError(f"{where}: 'replace' takes [OLD, NEW] or a list of [OLD, NEW] pairs")
    source = spec.get("source")
    if source is None and not replace:
        raise LabFormatError(f"{where}: a patch of cell {cell} needs 'replace' or 'source'")
    if source is not None and not isinstance(source, str):
        raise LabFormatError(f"{where}: 'source' must be the cell's whole new source, a string")
    return Edit(cell, [list(r) for r in replace], source)


def _expectations(where, spec, by_id) -> dict:
    if not isinstance(spec, dict):
        raise LabFormatError(f"{where}: expect must map question ids to points or 'full'")
    expect = {}
    for q, points in spec.items():
        if q not in by_id:
            raise LabFormatError(f"{where}: unknown question {q!r} in expect; expected one of {sorted(by_id)}")
        if by_id[q].manual:
            raise LabFormatError(f"{where}: {q} is marked by hand; expect names automatic questions only")
        full = by_id[q].points
        if points == "full":
            points = full
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points <= full:
            raise LabFormatError(f"{where}: expect {q}: {points!r} is not 'full' or a number of points "
                                 f"in [0, {full:g}]")
        expect[q] = float(points)
    return expect


def lab_cell_timeout(nb) -> float:
    """The lab's cell limit in seconds: `metadata.traindeep.cell_timeout` when the lab raises it (with its
    `cell_timeout_reason`), else 120 s."""
    meta = nb.metadata.get("traindeep", {})
    if "cell_timeout" not in meta:
        return DEFAULT_CELL_TIMEOUT
    value = meta["cell_timeout"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise LabFormatError(f"traindeep.cell_timeout must be a positive number of seconds; got {value!r}")
    if not str(meta.get("cell_timeout_reason", "")).strip():
        raise LabFormatError("traindeep.cell_timeout needs a cell_timeout_reason saying why the lab needs it")
    return float(value)


# CPython 3.11's ast.parse keeps its recursion count in interpreter-wide state: two grading threads
# parsing at once can fail with "SystemError: AST constructor recursion depth mismatch" (gh-106905),
# which turned a submission into a grader error. One parse at a time.
_PARSE_LOCK = threading.Lock()


def parse_python(source: str):
    """`ast.parse(source)`, one thread at a time."""
    import ast

    with _PARSE_LOCK:
        return ast.parse(source)


def forbidden_uses(source: str, forbid, context=()) -> list[str]:
    """The names in `forbid` (dotted, like `torch.nn.init`) that the code `source` uses.

    Reads the code, never runs it: imports and attribute chains are resolved
    through the aliases the cell itself imports (`from torch import nn` makes
    `nn.init.x` mean `torch.nn.init.x`). Not a defence against deliberate
    obfuscation, which a marker can see in the answer. `context` holds the
    sources of the lab's helper cells: their imports name the modules an
    answer refers to (`probes` after `from traindeep import probes`), without
    counting as uses themselves.
    """
    import ast

    try:
        tree = parse_python(source)
    except SyntaxError:
        return []
    aliases, used = {"nn": "torch.nn", "F": "torch.nn.functional"}, set()

    def imports(node, record):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                record.add(a.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                record.add(f"{node.module}.{a.name}")

    for helper in context:
        try:
            for node in ast.walk(parse_python(helper)):
                imports(node, set())
        except SyntaxError:
            continue
    for node in ast.walk(tree):
        imports(node, used)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)):
            parts = []
            while isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            if isinstance(node, ast.Name):
                parts.append(aliases.get(node.id, node.id))
                used.add(".".join(reversed(parts)))
    return sorted({name for name in forbid for u in used
                   if u == name or u.startswith(name + ".") or u.endswith("." + name)})
