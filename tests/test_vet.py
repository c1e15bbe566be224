"""`labs vet` on the tiny lab: declared mistakes, grades across draws, time margins, and the grader's redraw."""

import csv
from pathlib import Path

import nbformat
import pytest
from tinylab import tiny_solution

from traindeep.__main__ import main
from traindeep.course.grade import Grader, grade_batch
from traindeep.course.labformat import LabFormatError, lab_cell_timeout, mistakes, questions
from traindeep.course.labs import lab_from_solution
from traindeep.course.notebooks import read_notebook
from traindeep.course.vet import vet_lab

pytestmark = pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")

ADDS = {"name": "adds", "kind": "mistake", "patch": {"cell": "a1", "replace": ["factor * v", "factor + v"]},
        "expect": {"q1": 0}}
ROOT_ALTERNATIVE = {"name": "root_of_ratio", "kind": "alternative",
                    "patch": {"question": "q2", "replace": ["(2.0 / fan_in) ** 0.5", "2.0 ** 0.5 / fan_in ** 0.5"]}}
DELEGATES = {"name": "delegates_to_torch_sqrt", "kind": "delegation",
             "patch": {"cell": "a2", "replace": ["return (2.0 / fan_in) ** 0.5",
                                                 "return torch.sqrt(torch.tensor(2.0 / fan_in)).item()"]},
             "expect": {"q2": 0}}
# Wrong only when a drawn input is negative: on some draws it keeps its points, on others not.
ABS = {"name": "abs_values", "kind": "mistake", "expect": {"q1": 0},
       "patch": {"cell": "a1", "replace": [["factor * v", "factor * abs(v)"]]}}
OFF_BY_A_BIT = {"name": "plus_a_thousandth", "kind": "alternative",
                "patch": {"cell": "a2", "replace": ["(2.0 / fan_in) ** 0.5", "(2.0 / fan_in) ** 0.5 + 1e-3"]}}


def lab(tmp_path, declared, name="tiny.ipynb", edit=None):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["forbid"] = ["torch.sqrt"]
    nb.metadata["traindeep"]["mistakes"] = declared
    for cell in nb.cells:
        if edit and cell.id in edit:
            cell.source = edit[cell.id](cell.source)
    nbformat.write(nb, tmp_path / name)
    return tmp_path / name


def test_a_good_declaration_passes_and_the_table_shows_every_variant(tmp_path, capsys):
    path = lab(tmp_path, [ADDS, ROOT_ALTERNATIVE, DELEGATES])
    code = main(["labs", "vet", str(path), "--draws", "3", "--seed", "7", "--workers", "2", "--pack",
                 "--out", str(tmp_path / "vet.md")])
    table = (tmp_path / "vet.md").read_text()
    assert code == 0, table
    assert "## tiny: PASS" in table and "3 draws (grader seeds 7 to 9)" in table
    assert "| solution | solution | - | 2 | 2 |" in table
    assert "| unfilled lab | stub | q1: 0, q2: 0 | 0 | 0 |" in table
    # Packed into one run (they touch different questions): each variant's row shows its own question.
    assert "| adds | mistake | q1: 0 | 0 |  |" in table
    assert "| root_of_ratio | alternative | - |  | 2 |" in table
    # The delegation runs (its result is right) but the source check takes the question's points.
    assert "| delegates_to_torch_sqrt | delegation | q2: 0 | 2 | 0 |" in table
    assert "Slowest cell of the solution's run" in table and "## tiny: PASS" in capsys.readouterr().out


def test_a_mistake_that_varies_and_an_alternative_that_loses_fail_naming_both(tmp_path):
    vetting = vet_lab(lab(tmp_path, [ABS, OFF_BY_A_BIT]), draws=4, seed=0, workers=2)
    assert not vetting.passed
    varies = [f for f in vetting.failures if f.startswith("mistake 'abs_values': q1 gets 0 to 2 points across draws")]
    assert varies and "probe 'scale' fails on" in varies[0], vetting.failures
    assert "alternative 'plus_a_thousandth': q2 gets 1 points on every draw, expected 2; probe 'he_std' fails on " \
           "4/4 draws" in " ".join(vetting.failures)
    assert len(vetting.failures) == 2, vetting.failures
    assert "0-2 (mean " in vetting.markdown() and "## tiny: FAIL" in vetting.markdown()


def test_a_solution_that_loses_a_point_or_a_slow_cell_fails(tmp_path):
    def breaks_on_large_fans(source):
        return source.replace("    return (2.0 / fan_in) ** 0.5",
                              "    assert fan_in < 2500, 'large fan'\n    return (2.0 / fan_in) ** 0.5")

    def slow(source):
        return "import time\ntime.sleep(3.0)\n" + source

    path = lab(tmp_path, [ADDS], edit={"a2": breaks_on_large_fans, "a1": slow})
    vetting = vet_lab(path, draws=4, seed=0, workers=2, cell_timeout=6.0)
    loses = [f for f in vetting.failures if f.startswith("solution: q2 gets 1 to 2 points across draws")]
    assert loses and "probe 'he_std' fails on" in loses[0] and "AssertionError" in loses[0], vetting.failures
    assert any("the q1 answer cell took 3." in f and "more than a third of the 6 s cell limit" in f
               for f in vetting.failures), vetting.failures


@pytest.mark.parametrize("entry,message", [
    ({**ADDS, "patch": {"cell": "nope", "replace": ["a", "b"]}}, "mistake 'adds': unknown cell id 'nope'"),
    ({**ADDS, "patch": {"cell": "c1", "replace": ["a", "b"]}}, "unknown cell id 'c1'; the answer cells are"),
    ({**ADDS, "patch": {"cell": "a1", "replace": ["factor / v", "v"]}}, "cell a1 does not contain 'factor / v'"),
    ({**ADDS, "expect": {"q9": 0}}, "unknown question 'q9' in expect"),
    ({**ADDS, "expect": {"q3": 0}}, "q3 is marked by hand"),
    ({**ADDS, "expect": {"q1": 5}}, "expect q1: 5 is not 'full' or a number of points in [0, 2]"),
    ({**ADDS, "expect": {}}, "a mistake must cost points on some question"),
    ({**ROOT_ALTERNATIVE, "expect": {"q2": 1}}, "an alternative keeps full marks"),
    ({**DELEGATES, "expect": {"q1": 0}}, "a delegation must score 0 on a question that forbids helpers"),
    ({**ADDS, "kind": "typo"}, "kind 'typo' is not one of"),
    ({**ADDS, "patch": {"question": "q7", "replace": ["a", "b"]}}, "unknown question 'q7'"),
    ({**ADDS, "points": 1}, "unknown key(s) ['points']"),
])
def test_declarations_are_checked_with_clear_errors(entry, message):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][0]["forbid"] = []
    nb.metadata["traindeep"]["questions"][1]["forbid"] = ["torch.sqrt"]
    nb.metadata["traindeep"]["mistakes"] = [entry]
    with pytest.raises(LabFormatError) as error:
        mistakes(nb)
    assert message in str(error.value)


def test_declared_mistakes_and_the_cell_limit_never_reach_the_student_lab():
    nb = tiny_solution()
    nb.metadata["traindeep"].update(mistakes=[ADDS], cell_timeout=200, cell_timeout_reason="a long sweep")
    assert [m.name for m in mistakes(nb)] == ["adds"]
    student = lab_from_solution(nb, "labs/tiny.ipynb", "solutions/tiny.ipynb")
    assert "traindeep" not in student.metadata and "factor + v" not in nbformat.writes(student)


def test_the_grader_honours_the_labs_cell_limit_unless_told_otherwise(tmp_path):
    nb = tiny_solution()
    nb.metadata["traindeep"].update(cell_timeout=200, cell_timeout_reason="q2 trains nine networks")
    nbformat.write(nb, tmp_path / "slow.ipynb")
    assert Grader(tmp_path / "slow.ipynb").cell_timeout == 200
    assert Grader(tmp_path / "slow.ipynb", cell_timeout=50).cell_timeout == 50
    assert lab_cell_timeout(tiny_solution()) == 120
    del nb.metadata["traindeep"]["cell_timeout_reason"]
    with pytest.raises(LabFormatError, match="needs a cell_timeout_reason"):
        lab_cell_timeout(nb)


# The solution "fails" this probe when n is a multiple of 4: one draw in four.
SOMETIMES = {"name": "n not a multiple of 4", "call": "he_std({n})", "value": "min({n} % 4, 1)", "rule": {"equals": 1},
             "draw": {"n": [3, 30]}}
NEVER = {"name": "never", "call": "he_std({n})", "value": "{n} > 10**6", "rule": {"equals": True},
         "draw": {"n": [3, 6]}}


def test_a_probe_the_solution_fails_on_this_draw_is_drawn_again(tmp_path):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"].append(SOMETIMES)
    nbformat.write(nb, tmp_path / "sometimes.ipynb")
    seed = next(s for s in range(100) if Grader(tmp_path / "sometimes.ipynb", seed=s).probes[-1].drawn["n"] % 4 == 0)
    grader = Grader(tmp_path / "sometimes.ipynb", timeout=120, seed=seed)
    grader.prepare()
    assert grader.dropped == [] and len(grader.redrawn) == 1, grader.dropped
    assert grader.redrawn[0].startswith("q2/n not a multiple of 4: the solution fails it with n=")
    assert "redrawn: n=" in grader.redrawn[0]
    assert grader.probes[-1].drawn["n"] % 4 != 0 and grader.max_points == 5


def test_a_probe_no_draw_can_pass_is_dropped_and_the_batch_still_grades(tmp_path, capsys):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"].append(NEVER)
    nbformat.write(nb, tmp_path / "never.ipynb")
    (tmp_path / "subs").mkdir()
    nbformat.write(tiny_solution(), tmp_path / "subs" / "ana.ipynb")
    assert grade_batch(tmp_path / "never.ipynb", [tmp_path / "subs"], tmp_path / "out", timeout=120, seed=1)
    assert "WARNING: probe q2/never DROPPED for this batch" in capsys.readouterr().err
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert (row["q1"], row["q2"], row["total"], row["max"]) == ("2", "2", "4", "4")
    assert "probe q2/never DROPPED for this batch" in row["status"]
    feedback = (tmp_path / "out" / "feedback" / "ana.md").read_text()
    assert "(not graded) never: dropped for this batch" in feedback and "5 new draws failed too" in feedback


SOLUTIONS = sorted((Path(__file__).resolve().parent.parent / "solutions").glob("*.ipynb"))
ALIASES = ("torch.ops", "torch._C", "torch._VF", "getattr(", "importlib")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_lab_declares_six_variants_an_alternative_and_an_aliased_delegation(solution):
    nb = read_notebook(solution)
    declared = mistakes(nb)
    kinds = [m.kind for m in declared]
    assert len(declared) >= 6 and "alternative" in kinds, kinds
    if any(q.forbid for q in questions(nb)):
        aliased = [m.name for m in declared if m.kind == "delegation"
                   and any(alias in new for e in m.edits for _, new in e.replace for alias in ALIASES)]
        assert aliased, "a lab that forbids helpers declares a delegation through an alias"


def test_a_run_over_the_output_cap_is_split_into_fewer_draws(tmp_path, monkeypatch):
    # Probes that return large arrays (lab 1's once returned whole weight tensors) can pass the 64 MB output cap.
    from traindeep.course import vet
    from traindeep.course.grade import Evaluation

    path = lab(tmp_path, [ADDS])
    runs = []

    def fake_evaluate(self, graded):
        keys = [p.key for p in self.probes]
        runs.append(len({p.name.split("#")[1] for p in self.probes if p.probe.draw}))
        if runs[-1] > 2:
            return Evaluation({}, ["stopped: wrote more than 64 MB of output"], None)
        return Evaluation({k: {"error": "not run in this test"} for k in keys}, [], None)

    monkeypatch.setattr(vet._TimedGrader, "_evaluate", fake_evaluate)
    grader = vet._TimedGrader(path, seed=0)
    per_draw = vet.drawn_probes(path, 0, 5)
    evaluation, _ = vet._evaluate(grader, tiny_solution(), per_draw, list(range(5)))
    assert runs == [5, 2, 3, 1, 2]  # 5 draws, then 2 + 3, the 3 split again into 1 + 2
    assert evaluation.problems == [] and len(evaluation.values) == len({p.key for d in per_draw for p in d})


def test_probes_with_one_call_share_one_cell_and_each_is_judged(tmp_path):
    # Only this probe's judged value draws: its five draws, and q2's other check of he_std(64), run the call once.
    from traindeep.course import vet
    from traindeep.course.grade import splice

    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"].append(
        {"name": "he_std(64) scaled", "call": "he_std(64)", "value": "he_units(result, 64) * {c}",
         "draw": {"c": [1.0, 2.0]}, "rtol": 1e-9, "points": 1})
    nbformat.write(nb, tmp_path / "shared.ipynb")
    per_draw = vet.drawn_probes(tmp_path / "shared.ipynb", 0, 5)
    grader = vet._TimedGrader(tmp_path / "shared.ipynb", seed=0, timeout=120)
    grader.probes = list({id(p): p for d in per_draw for p in d}.values())
    graded, _, _ = splice(nb, nb)
    probed, _ = grader._probed(graded)
    calls = [c.source for c in probed.cells if c.id.startswith("probe-")]
    assert len(grader.probes) == 16 and len(calls) == len(set(calls)) == 11  # 5 + 5 drawn calls, 1 shared
    assert sum("he_std(64)" in c for c in calls) == 1

    evaluation, _ = vet._evaluate(grader, graded, per_draw, list(range(5)))
    scaled = [p for d in per_draw for p in d if p.name.startswith("he_std(64) scaled")]
    assert len({p.drawn["c"] for p in scaled}) == 5
    for p in scaled:
        assert evaluation.values[p.key]["value"] == pytest.approx(p.drawn["c"], rel=1e-9)
    assert all("value" in evaluation.values[p.key] for p in grader.probes)


def test_the_judge_computes_a_value_once_per_raw_result(tmp_path):
    # The second run of the same answers sends the judge nothing: every value is known from the first.
    from traindeep.course.grade import splice

    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    grader = Grader(tmp_path / "tiny.ipynb", seed=3, timeout=120)
    sent = []
    read_judge = grader._read_judge
    grader._read_judge = lambda run, keys: (sent.append(list(keys)), read_judge(run, keys))[1]
    graded, _, _ = splice(grader.solution, grader.solution)
    first = grader._evaluate(graded).values
    second = grader._evaluate(graded).values
    assert len(sent[0]) == 3 and sent[1] == []  # three probes with calls, none sent again
    assert second == first and all("value" in v for v in first.values())
    assert len(grader._judged) == 3
