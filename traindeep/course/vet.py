"""`labs vet`: every grade is the same on every draw of the grader's inputs.

For one lab, grade the solution, the unfilled lab and every variant declared
in `metadata.traindeep.mistakes` (classic mistakes, delegations to forbidden
helpers, valid alternatives) under N grader seeds, and check that

- the solution gets full marks on every draw,
- the unfilled lab gets nothing,
- a mistake gets the same points on every draw, and exactly the declared ones,
- a valid alternative keeps full marks,
- no cell of the solution's run takes more than a third of the lab's cell limit.

Draw d uses the inputs `grade --seed SEED+d` would draw, so a failing draw can
be replayed. A variant is not run once per draw: all N draws' probes go into
one run (each probe key suffixed `#d`), each variant runs once, and each draw
is scored on its own with the grader's per-question rule.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .grade import Grader, splice
from .labformat import is_answer, lab_cell_timeout, mistakes, question_of, stub_source
from .notebooks import read_notebook

MARGIN = 3  # the slowest cell must fit a third of the cell limit


@dataclass
class Variant:
    """What one run grades: the solution, the stub, or one or more declared variants patched in together."""

    label: str
    kind: str  # solution | stub | mistake | alternative | delegation | packed
    notebook: object
    members: list = field(default_factory=list)  # the declared Mistakes it holds


@dataclass
class Row:
    variant: str
    kind: str
    question: str
    expected: float
    points: list  # one per draw
    failed: dict  # probe name -> draws on which it failed
    why: dict  # probe name -> the grader's reason on its first failing draw

    @property
    def varies(self) -> bool:
        return min(self.points) != max(self.points)


@dataclass
class Vetting:
    lab: Path
    draws: int
    seed: int
    cell_limit: float
    rows: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    full: dict = field(default_factory=dict)  # question id -> its points (automatic questions)
    feedback: dict = field(default_factory=dict)  # variant -> what its student would read (draw 0)
    slowest: list = field(default_factory=list)  # (seconds, what), slowest first, from the solution's run
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        questions = list(dict.fromkeys(r.question for r in self.rows))
        head = (f"## {self.lab.stem}: {'PASS' if self.passed else 'FAIL'}\n\n"
                f"{self.draws} draws (grader seeds {self.seed} to {self.seed + self.draws - 1}), "
                f"{self.seconds:.0f} s. A cell shows the points on every draw, or min-max and the mean "
                "when they vary; ✗ marks a cell that differs from the expected points.\n")
        lines = [head, "| variant | kind | expected (other questions: full) | " + " | ".join(questions) + " |",
                 "|---|---|---|" + "---|" * len(questions)]
        for label in dict.fromkeys(r.variant for r in self.rows):
            rows = {r.question: r for r in self.rows if r.variant == label}
            kind = next(iter(rows.values())).kind
            expected = ", ".join(f"{q}: {r.expected:g}" for q, r in rows.items()
                                 if kind in ("stub", "mistake", "delegation") and r.expected != self.full[q])
            lines.append(f"| {label} | {kind} | {expected or '-'} | "
                         + " | ".join(_cell(rows[q]) if q in rows else "" for q in questions) + " |")
        if self.slowest:
            seconds, what = self.slowest[0]
            lines += ["", f"Slowest cell of the solution's run: {what}, {seconds:.1f} s at one thread "
                          f"(cell limit {self.cell_limit:g} s; at most {self.cell_limit / MARGIN:.0f} s allowed)."]
        if self.failures:
            lines += ["", "Failures:", ""] + [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"


def _cell(row: Row) -> str:
    low, high = min(row.points), max(row.points)
    mean = sum(row.points) / len(row.points)
    text = f"{low:g}" if low == high else f"{low:g}-{high:g} (mean {mean:.2f})"
    wrong = row.varies or low != row.expected
    return text + (f" ✗ (expected {row.expected:g})" if wrong else "")


class _TimedGrader(Grader):
    """The grader, keeping each run's notebook and per-cell seconds (the runner reports them)."""

    _local = threading.local()

    def _read_run(self, run, nb):
        try:
            seconds = json.loads(run.stdout).get("seconds")
        except (ValueError, AttributeError, TypeError):
            seconds = None
        self._local.timing = (nb, seconds if isinstance(seconds, list) else None)
        return super()._read_run(run, nb)


def drawn_probes(solution, seed: int, draws: int) -> list[list]:
    """The probes of draws 0..N-1, as `grade --seed SEED+d` would draw them, each key suffixed `#d`.
    A probe that draws nothing is the same on every draw: all draws share draw 0's (it runs once)."""
    shared, result = {}, []
    for d in range(draws):
        probes = []
        for p in Grader(solution, seed=seed + d).probes:
            if p.probe.draw:
                probes.append(dataclasses.replace(p, name=f"{p.name}#{d}"))
            else:
                probes.append(shared.setdefault(p.key, dataclasses.replace(p, name=f"{p.name}#{d}")))
        result.append(probes)
    return result


def variants_of(nb, stub, pack: bool) -> list[Variant]:
    """The stub and the declared variants; packed, variants that touch disjoint questions share a run."""
    declared = mistakes(nb)
    result = [Variant("unfilled lab", "stub", stub)]
    groups: list[list] = []
    for m in declared:
        group = next((g for g in groups if pack and not any(_touched(m, nb) & _touched(o, nb) for o in g)), None)
        if group is None:
            groups.append([m])
        else:
            group.append(m)
    for group in groups:
        patched = nb
        for m in group:
            patched = m.apply(patched)
        label = group[0].name if len(group) == 1 else " + ".join(m.name for m in group)
        result.append(Variant(label, group[0].kind if len(group) == 1 else "packed", patched, group))
    return result


def _touched(mistake, nb) -> set:
    """The questions a variant edits or is declared to cost."""
    cells = {c.get("id"): c for c in nb.cells}
    return {question_of(cells[e.cell]) for e in mistake.edits} | set(mistake.expect)


def stub_notebook(solution: Path, nb):
    """The unfilled lab students get: labs/NAME.ipynb beside the solutions, else the solution with stubs."""
    lab = solution.resolve().parent.parent / "labs" / solution.name
    if lab.exists():
        return read_notebook(lab)
    stub = copy.deepcopy(nb)
    for cell in stub.cells:
        if is_answer(cell):
            cell.source = stub_source(cell)
    return stub


def score(grader: Grader, graded, answered: dict, evaluation) -> tuple[dict, str]:
    """{question id: (points, {probe name: why it failed})} by the grader's own per-question rule, and the
    feedback a student would read."""
    scored = grader.score(graded, answered, evaluation)
    # Without the draw's "#k" that vetting adds to each probe's name: as the student reads it.
    feedback = "\n".join(re.sub(r"#\d+(?=:)", "", line) for q in scored.feedback for line in scored.feedback[q])
    return {q: (points, {name.rsplit("#", 1)[0]: why for name, why in scored.failed[q].items()})
            for q, points in scored.scores.items()}, feedback


def vet_lab(solution, draws: int = 50, seed: int = 0, workers: int = 1, timeout: float | None = None,
            cell_timeout: float | None = None, sandbox: bool = True, pack: bool = False, log=print,
            check_time: bool = True) -> Vetting:
    """Grade the solution, its unfilled stub and every declared variant on `draws` grader draws.

    `check_time=False` reports the slowest cells without failing on them: wall-clock times measure the
    machine's load as much as the cell (the per-lab unit tests run beside other work; `make verify`,
    on a quiet machine, keeps the check)."""
    start = time.monotonic()
    solution = Path(solution)
    nb = read_notebook(solution)
    limit = cell_timeout if cell_timeout is not None else lab_cell_timeout(nb)
    runs = variants_of(nb, stub_notebook(solution, nb), pack)
    grader = _TimedGrader(solution, timeout=timeout or 300 + 30 * draws, cell_timeout=limit, seed=seed,
                          sandbox=sandbox)
    per_draw = drawn_probes(solution, seed, draws)
    grader.probes = list({id(p): p for probes in per_draw for p in probes}.values())
    vetting = Vetting(solution, draws, seed, limit, full={q.id: q.points for q in grader.questions if not q.manual})

    log(f"{solution.name}: the solution, then {len(runs)} variant run(s), {draws} draws each")
    graded, _, answered = splice(nb, nb)
    evaluation, slowest = _evaluate(grader, graded, per_draw, list(range(draws)))
    vetting.failures += [f"solution: {p}" for p in evaluation.problems]
    grader.reference = {k: v["value"] for k, v in evaluation.values.items() if "value" in v}
    vetting.slowest = slowest
    for took, what in vetting.slowest:  # every cell without the margin, so none hides behind another
        if check_time and took > limit / MARGIN:
            vetting.failures.append(f"solution: {what} took {took:.1f} s at one thread, more than a third of the "
                                    f"{limit:g} s cell limit (make it cheaper, or raise traindeep.cell_timeout "
                                    "with a cell_timeout_reason)")
    results = [(Variant("solution", "solution", nb), _scores(grader, per_draw, graded, answered, evaluation))]

    def run(variant):
        graded, _, answered = splice(nb, variant.notebook)
        if not any(answered.values()):  # the grader runs nothing for a notebook without answers
            evaluation = None
        else:
            evaluation, _ = _evaluate(grader, graded, per_draw, list(range(len(per_draw))))
        log(f"  graded {variant.label}")
        return variant, _scores(grader, per_draw, graded, answered, evaluation)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results += list(pool.map(run, runs))
    for variant, (scores, feedback) in results:
        _check(vetting, variant, scores, nb)
        for name in [variant.label] + [m.name for m in variant.members]:
            vetting.feedback[name] = feedback
    vetting.seconds = time.monotonic() - start
    return vetting


def _evaluate(grader, graded, per_draw, draws: list) -> tuple:
    """One run with the probes of `draws`; a run whose probe results pass the output cap is split in halves
    (probes that return large arrays). Returns the evaluation and the run's slowest cells."""
    view = copy.copy(grader)
    view.probes = list({id(p): p for d in draws for p in per_draw[d]}.values())
    evaluation = view._evaluate(graded)
    slowest = _slowest(*getattr(grader._local, "timing", (None, None)))
    if len(draws) > 1 and any("wrote more than" in problem for problem in evaluation.problems):
        half = len(draws) // 2
        (first, slow_a), (second, slow_b) = (_evaluate(grader, graded, per_draw, part)
                                             for part in (draws[:half], draws[half:]))
        evaluation = dataclasses.replace(
            first, values={**first.values, **second.values},
            problems=list(dict.fromkeys(first.problems + second.problems)),
            suspicious=list(dict.fromkeys(first.suspicious + second.suspicious)),
            run_seconds=first.run_seconds + second.run_seconds)
        slowest = sorted(slow_a + slow_b, key=lambda t: -t[0])[:5]
    return evaluation, slowest


def _scores(grader, per_draw, graded, answered, evaluation) -> tuple[list[dict], str]:
    """One {question: (points, failed probes)} per draw, and the feedback of draw 0."""
    from .grade import Evaluation

    evaluation = evaluation or Evaluation({}, [], None)
    result, feedback = [], []
    for probes in per_draw:
        view = copy.copy(grader)
        view.probes = probes
        points, text = score(view, graded, answered, evaluation)
        result.append(points)
        feedback.append(text)
    return result, feedback[0]


def _check(vetting: Vetting, variant: Variant, scores: list[dict], nb) -> None:
    full = vetting.full
    owner = {}  # question -> the declared variant it belongs to
    for m in variant.members:
        for q in _touched(m, nb):
            owner[q] = m
    for q in full:
        member = owner.get(q)
        if variant.kind == "stub":
            expected, label, kind = 0.0, variant.label, "stub"
        elif member is not None:
            expected, label, kind = member.expect.get(q, full[q]), member.name, member.kind
        else:
            expected, label, kind = full[q], variant.label, variant.kind
        row = Row(label, kind, q, expected, [s[q][0] for s in scores], {}, {})
        for d, s in enumerate(scores):
            for name, why in s[q][1].items():
                row.failed.setdefault(name, []).append(d)
                row.why.setdefault(name, why)
        vetting.rows.append(row)
        problem = _problem(row, vetting)
        if problem:
            where = f" (graded together with {variant.label})" if label != variant.label else ""
            name = f"{kind} {label!r}" if kind not in ("solution", "stub") else label
            vetting.failures.append(f"{name}{where}: {q} {problem}")


def _problem(row: Row, vetting: Vetting) -> str:
    """Why a row fails vetting, naming the probes and draws; '' when it passes."""
    low, high = min(row.points), max(row.points)
    if not row.varies and low == row.expected:
        return ""
    if row.varies:
        said = f"gets {low:g} to {high:g} points across draws (expected {row.expected:g} on every draw)"
    else:
        said = f"gets {low:g} points on every draw, expected {row.expected:g}"
    details = []
    for name, failing in row.failed.items():
        if len(failing) < vetting.draws or not row.varies:
            seeds = ", ".join(str(vetting.seed + d) for d in failing[:5]) + (" ..." if len(failing) > 5 else "")
            details.append(f"probe {name!r} fails on {len(failing)}/{vetting.draws} draws"
                           + (f" (grader seeds {seeds})" if len(failing) < vetting.draws else "")
                           + f": {row.why[name]}")
    return said + ("; " + "; ".join(details) if details else "")


def _slowest(nb, seconds) -> list:
    """(seconds, which cell) of the run's cells, slowest first."""
    if nb is None or not seconds:
        return []
    from .grade import describe

    timed = [(s, describe(cell)) for cell, s in zip(nb.cells, seconds) if isinstance(s, (int, float))]
    return sorted(timed, key=lambda t: -t[0])[:5]


def vet(labs, draws: int = 50, seed: int = 0, workers: int = 1, out=None, sandbox: bool = True,
        pack: bool = False, cell_timeout: float | None = None, timeout: float | None = None) -> bool:
    """Vet each lab in turn; print the tables (and write them to `out`); True when all pass."""
    tables, ok = [], True
    for lab in labs:
        vetting = vet_lab(lab, draws, seed, workers, timeout, cell_timeout, sandbox, pack)
        tables.append(vetting.markdown())
        print(tables[-1])
        ok &= vetting.passed
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("# labs vet\n\n" + "\n".join(tables), encoding="utf-8")
    return ok
