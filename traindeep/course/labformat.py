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


def is_unanswered(source: str, cell_type: str = "code", stub: str | None = None) -> bool:
    """True when an answer cell holds nothing, the stub (whitespace aside), or only stubs.

    A code cell whose stub leaves functions to write (`def fans(weight): ... raise
    NotImplementedError`) is unanswered while every one of them still raises
    NotImplementedError; one written function makes it an answer, partial but
    graded. Without `stub`, a cell counts as unanswered when it is the bare
    code stub or every function it defines is still a stub.
    """
    stripped = source.strip()
    if not stripped or (stub is not None and "".join(source.split()) == "".join(stub.split())):
        return True
    if cell_type != "code":
        return stripped == TEXT_STUB
    if "".join(source.split()) == "".join(CODE_STUB.split()):
        return True
    written = _stub_functions(source)
    if written is None:  # does not parse: the student's own text
        return False
    if stub is None:
        return bool(written) and all(written.values())
    left = [name for name, empty in (_stub_functions(stub) or {}).items() if empty]
    if not left:
        return False
    defined = defined_names(source)
    return all(written[name] if name in written else name not in defined for name in left)


def _stub_functions(source: str) -> dict | None:
    """{function name: whether its body only raises NotImplementedError} for the module-level functions
    of `source` (a docstring aside); None when it does not parse."""
    import ast

    trees = _parse_code(source)
    if not trees:
        return None
    found = {}
    for node in trees[0].body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if node.body and isinstance(node.body[0], ast.Expr) and \
                isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str) \
                else node.body
            found[node.name] = len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None \
                and _raises_not_implemented(body[0].exc)
    return found


def _raises_not_implemented(exc) -> bool:
    import ast

    target = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(target, ast.Name) and target.id == "NotImplementedError"


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

    Reads the code as IPython would run it (magics become calls, a cell magic's
    body is read too), never runs it. Names are resolved through the imports
    and plain assignments of the cell (`from torch import nn` makes `nn.init.x`
    mean `torch.nn.init.x`), through `getattr`, `importlib.import_module`,
    `__import__` and `sys.modules[...]` with a constant name (string pieces
    joined with `+`, f-strings without fields and `"".join([...])` count as
    constant). `context` holds other cells' sources (the lab's helper cells,
    the student's other answers): their imports name the modules an answer
    refers to, without counting as uses themselves.

    When `forbid` is not empty, any use of a private door into torch's
    operators (`torch.ops`, `torch._C`, `torch._VF`, ...) counts as forbidden
    too, and forbidding `torch.nn.functional.X` forbids its alias `torch.X`.
    What it cannot see, a name computed at run time (`getattr(torch.nn, name)`),
    `suspicious_uses` flags for a marker.
    """
    aliases = dict(DEFAULT_ALIASES)
    for other in context:
        for tree in _parse_code(other):
            _imports(tree, aliases, set())
    used = set()
    for tree in _parse_code(source):
        used |= _uses(tree, aliases)
    wanted = {name: name for name in forbid}
    wanted.update({"torch." + name.rsplit(".", 1)[1]: name for name in forbid
                   if name.startswith("torch.nn.functional.")})
    found = {shown for name, shown in wanted.items() for u in used
             if u == name or u.startswith(name + ".") or u.endswith("." + name)}
    if forbid:
        found |= {door for door in TORCH_BACKDOORS for u in used if u == door or u.startswith(door + ".")}
    return sorted(found)


def suspicious_uses(source: str) -> list[str]:
    """What in an answer cell reaches code by a computed name or reaches into the kernel's machinery:
    `getattr` with a non-constant name, `__import__`, `importlib`, `sys.modules`, `globals()`, `vars()`,
    `eval`/`exec`, `__dict__`, and IPython's hooks (`get_ipython`, `events.register`, `display_pub`,
    `sys.displayhook`, `publish_display_data`). Short descriptions, sorted; [] for ordinary code."""
    import ast

    found = set()
    if "get_ipython" in _name_tokens(source):  # magics become get_ipython() calls: count only the written ones
        found.add("get_ipython()")
    aliases = dict(DEFAULT_ALIASES)
    for tree in _parse_code(source):
        _imports(tree, aliases, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in DYNAMIC_BUILTINS:
                found.add(f"{node.id}()" if node.id != "__builtins__" else node.id)
            elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRIBUTES:
                found.add(node.attr)
            elif isinstance(node, ast.Attribute) and node.attr in ("register", "unregister", "callbacks") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "events":
                found.add("events." + node.attr)
            elif isinstance(node, ast.Name) and node.id in DYNAMIC_ATTRIBUTES:
                found.add(node.id)
            elif isinstance(node, ast.ImportFrom):
                found |= {a.name for a in node.names if a.name in DYNAMIC_ATTRIBUTES}
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                    "getattr", "setattr", "delattr", "hasattr") and (len(node.args) < 2 or
                                                                      _constant(node.args[1]) is None):
                found.add(f"{node.func.id} with a computed name")
            if isinstance(node, (ast.Name, ast.Attribute)):
                chain = _resolve(node, aliases)
                if chain and (chain == "importlib" or chain.startswith("importlib.")):
                    found.add("importlib")
                elif chain == "sys.modules":
                    found.add(chain)
    return sorted(found)


def defined_names(source: str) -> set[str]:
    """The names a code cell binds at module level: functions, classes, imports, assignments."""
    import ast

    names: set[str] = set()
    for tree in _parse_code(source):
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
                continue
            if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            stack.extend(ast.iter_child_nodes(node))
    return names


def referenced_names(source: str) -> set[str]:
    """Every plain name a code cell (or an expression) reads."""
    import ast

    return {node.id for tree in _parse_code(source) for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


DEFAULT_ALIASES = {"nn": "torch.nn", "F": "torch.nn.functional"}
# Private doors into torch's operators: a function a question forbids is reachable through each of them.
TORCH_BACKDOORS = ("torch.ops", "torch._C", "torch._VF", "torch._refs", "torch._decomp", "torch._prims")
DYNAMIC_BUILTINS = ("__import__", "eval", "exec", "compile", "globals", "vars", "locals", "__builtins__")
DYNAMIC_ATTRIBUTES = ("__dict__", "__globals__", "__builtins__", "__getattribute__", "display_pub",
                      "displayhook", "publish_display_data")


MAX_SOURCE_CHARS = 200_000  # larger code is never parsed here: its syntax tree could take gigabytes


def _parse_code(source: str) -> list:
    """The syntax trees of a code cell as IPython runs it: the cell with its magics turned into calls, then
    each cell magic's body. [] when it does not parse (then it does not run either), and for code over
    MAX_SOURCE_CHARS (the grader refuses to run such an answer)."""
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    if len(source) > MAX_SOURCE_CHARS:
        return []
    try:
        text = TransformerManager().transform_cell(source)
    except Exception:  # IPython could not transform it: read it as plain Python
        text = source
    try:
        tree = parse_python(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    trees = [tree]
    for node in ast.walk(tree):
        # A cell magic's body, and a line magic's argument (%time, %timeit), may be code it runs.
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "run_cell_magic", "run_line_magic") and node.args and _constant(node.args[-1]) is not None:
            trees += _parse_code(_constant(node.args[-1]))
    return trees


def _name_tokens(source: str) -> set[str]:
    """The identifiers in `source` outside comments and strings."""
    import io
    import tokenize

    names = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.NAME:
                names.add(token.string)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        names |= set(re.findall(r"[A-Za-z_]\w*", source))
    return names


def _constant(node) -> str | None:
    """The string a node always evaluates to ('a' + 'b', f'ab', ''.join(['a', 'b'])), else None."""
    import ast

    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _constant(node.left), _constant(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [_constant(v) for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" \
            and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        sep, parts = _constant(node.func.value), [_constant(e) for e in node.args[0].elts]
        return sep.join(parts) if sep is not None and all(p is not None for p in parts) else None
    return None


def _imports(tree, aliases: dict, record: set) -> None:
    """Add the tree's imports (and `name = <dotted path>` assignments) to `aliases`; record imported names."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                record.add(a.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                record.add(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            chain = _resolve(node.value, aliases)
            if chain and chain != node.targets[0].id:
                aliases[node.targets[0].id] = chain


def _uses(tree, aliases: dict) -> set[str]:
    """Every dotted name the tree reaches: imports, attribute chains, and constant-name dynamic access."""
    import ast

    used: set[str] = set()
    _imports(tree, aliases, used)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name, ast.Call, ast.Subscript)):
            chain = _resolve(node, aliases)
            if chain:
                used.add(chain)
    return used


def _resolve(node, aliases: dict, depth: int = 0) -> str | None:
    """The dotted name an expression stands for (`nn.init` -> `torch.nn.init`,
    `getattr(torch.nn, "init")` -> `torch.nn.init`), or None."""
    import ast

    if depth > 50:
        return None
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        inner = _resolve(node.value, aliases, depth + 1)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, ast.Call):
        func = _resolve(node.func, aliases, depth + 1)
        name = _constant(node.args[1]) if func in ("getattr", "builtins.getattr") and len(node.args) >= 2 else None
        if name is not None:
            inner = _resolve(node.args[0], aliases, depth + 1)
            return f"{inner}.{name}" if inner else None
        if func in ("importlib.import_module", "__import__", "builtins.__import__") and node.args:
            return _constant(node.args[0])
        if func in ("vars", "builtins.vars") and len(node.args) == 1:
            return _resolve(node.args[0], aliases, depth + 1)
        return None
    if isinstance(node, ast.Subscript):
        key = _constant(node.slice)
        if key is None:
            return None
        inner = _resolve(node.value, aliases, depth + 1)
        if inner == "sys.modules":
            return key
        if inner and inner.endswith(".__dict__"):
            return f"{inner[:-len('.__dict__')]}.{key}"
        if isinstance(node.value, ast.Call) and inner:  # vars(module)["name"]
            return f"{inner}.{key}"
    return None
