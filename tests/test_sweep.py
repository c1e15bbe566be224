import math

import pytest

from traindeep import sweep


def fake_run(lr, batch_size, seed):
    """Small batches like lr 0.01, large ones like lr 0.1; lr 1 diverges."""
    best = 0.01 if batch_size == 16 else 0.1
    if lr >= 1:
        return {"val_acc": float("nan"), "test_acc": float("nan")}
    score = 0.9 - 0.2 * abs(math.log10(lr / best)) + 0.01 * seed
    return {"val_acc": score, "test_acc": score - 0.02}


@pytest.fixture
def records():
    return sweep.sweep(fake_run, {"lr": [0.001, 0.01, 0.1, 1.0], "batch_size": [16, 256]}, seeds=(0, 1),
                       progress=False)


def test_sweep_runs_every_setting_and_seed(records):
    assert len(records) == 4 * 2 * 2
    assert records[0] == {"lr": 0.001, "batch_size": 16, "seed": 0, "val_acc": pytest.approx(0.7),
                          "test_acc": pytest.approx(0.68)}


def test_summaries_give_mean_and_std_over_seeds(records):
    rows = {(r["lr"], r["batch_size"]): r for r in sweep.summarize(records, ["lr", "batch_size"])}
    row = rows[(0.01, 16)]
    assert row["n"] == 2 and row["val_acc_mean"] == pytest.approx(0.905)
    assert row["val_acc_std"] == pytest.approx(0.00707, rel=1e-3)
    assert math.isnan(rows[(1.0, 16)]["val_acc_mean"])


def test_best_per_compares_each_setting_at_its_own_best_lr(records):
    best = {r["batch_size"]: r for r in sweep.best_per(records, "batch_size")}
    assert best[16]["lr"] == 0.01 and best[256]["lr"] == 0.1
    assert best[16]["val_acc_mean"] == pytest.approx(best[256]["val_acc_mean"])
    # at one shared rate, the comparison would have been lopsided
    shared = {r["batch_size"]: r for r in sweep.summarize(records, ["lr", "batch_size"]) if r["lr"] == 0.1}
    assert shared[16]["val_acc_mean"] < shared[256]["val_acc_mean"] - 0.1


def test_markdown_table_is_in_the_coursework_format(records):
    rows = sweep.summarize([r for r in records if r["batch_size"] == 16], ["lr"])
    table = sweep.markdown_table(rows, "lr", "Learning Rate", notes=lambda r: "too high" if r["lr"] >= 1 else "")
    lines = table.splitlines()
    assert lines[0] == "| Learning Rate | Val Acc | Test Acc | Notes |"
    assert lines[2] == "| 0.001 | 70.5 ± 0.7% | 68.5 ± 0.7% |  |"
    assert lines[-1] == "| 1 | diverged | diverged | too high |"
    assert sweep.table_problems(table) == []


def test_a_table_can_show_test_accuracy_for_the_chosen_row_only(records):
    rows = sweep.summarize([r for r in records if r["batch_size"] == 16], ["lr"])
    (chosen,) = sweep.best_per([r for r in records if r["batch_size"] == 16], "batch_size")
    table = sweep.markdown_table(rows, "lr", "Learning Rate", test_for=lambda r: r["lr"] == chosen["lr"])
    test_cells = [line.split("|")[3].strip() for line in table.splitlines()[2:]]
    assert test_cells.count("—") == len(rows) - 1
    assert test_cells[[r["lr"] for r in rows].index(chosen["lr"])] == sweep.format_accuracy(
        chosen["test_acc_mean"], chosen["test_acc_std"])
    assert sweep.table_problems(table) == []
    unread_validation = table.replace("| 0.001 | 70.5 ± 0.7% |", "| 0.001 | — |")
    assert any("Val Acc '—'" in p for p in sweep.table_problems(unread_validation))


@pytest.mark.parametrize("table,problem", [
    ("| LR | Val | Test | Notes |\n|---|---|---|---|\n| 1 | 1% | 1% | |\n| 2 | 1% | 1% | |\n| 3 | 1% | 1% | |",
     "header should be"),
    ("| LR | Val Acc | Test Acc | Notes |\n|---|---|---|---|\n| 1 | 1% | 1% | |", "at least 3 rows"),
    ("| LR | Val Acc | Test Acc | Notes |\n|---|---|---|---|\n| 1 | 0.93 | 1% | |\n| 2 | 1% | 1% | |\n"
     "| 3 | 1% | 1% | |", "'0.93' is not an accuracy"),
    ("| LR | Val Acc | Test Acc | Notes |\n| 1 | 1% | 1% | |", "separator"),
    (None, "expected a markdown string"),
])
def test_table_problems_name_what_is_wrong(table, problem):
    assert any(problem in p for p in sweep.table_problems(table)), sweep.table_problems(table)


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match=r"grid\['lr'\] must be a non-empty list"):
        sweep.sweep(fake_run, {"lr": []})
    with pytest.raises(ValueError, match="both in the grid and in fixed"):
        sweep.sweep(fake_run, {"lr": [0.1]}, fixed={"lr": 0.1, "batch_size": 16})


def test_extend_to_interior_walks_each_contender_towards_its_own_best():
    ladder = [10.0 ** k for k in range(-5, 3)]
    optimum = {"low": 1e-4, "high": 10.0, "inside": 0.1, "far": 1e5}  # "far": beyond the ladder's top

    def run(contender, lrs):
        return [{**contender, "lr": lr, "seed": 0, "val_acc": -abs(math.log10(lr / optimum[contender["net"]]))}
                for lr in lrs]

    records = [r for net in optimum for r in run({"net": net}, [1e-2, 1e-1, 1.0])]
    calls = []
    extended = sweep.extend_to_interior(records, lambda c, lrs: calls.append((c["net"], lrs)) or run(c, lrs),
                                        "net", ladder)
    best = {row["net"]: row["lr"] for row in sweep.best_per(extended, "net", metrics=("val_acc",))}
    assert best == {"low": 1e-4, "high": 10.0, "inside": 0.1, "far": 100.0}
    assert ("inside", [1e-3]) not in calls and not any(net == "inside" for net, _ in calls)
    assert [lrs for net, lrs in calls if net == "low"] == [[1e-3], [1e-4], [1e-5]]
    # Only the contender that ran out of ladder is left on an edge, and the check names it.
    edges = sweep.edge_bests(extended, "net")
    assert len(edges) == 1 and "net=far: best lr 100" in edges[0], edges
    assert extended[:len(records)] == records
