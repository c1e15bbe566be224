"""Hyperparameter sweeps: a grid times seeds, tidy records, fair summaries and markdown tables.

Fair means each setting is judged at its own best learning rate: comparing two
batch sizes (or optimizers) at one shared learning rate mostly measures which
of them that rate happens to suit.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics

from tqdm.auto import tqdm

METRICS = ("val_acc", "test_acc")
TABLE_METRICS = (("val_acc", "Val Acc"), ("test_acc", "Test Acc"))


def settings(grid: dict) -> list[dict]:
    """Every combination of the grid's values, as dicts, in a stable order."""
    if not grid:
        return [{}]
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not list(values):
            raise ValueError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


def sweep(run, grid: dict, seeds=(0,), fixed: dict | None = None, progress: bool = True) -> list[dict]:
    """Call `run(**setting, seed=seed)` for every setting and seed.

    `run` returns a dict of metrics; each record is the setting, the seed and
    those metrics (one flat dict, ready for `summarize`).
    """
    fixed = dict(fixed or {})
    overlap = set(fixed) & set(grid)
    if overlap:
        raise ValueError(f"{sorted(overlap)} appear both in the grid and in fixed")
    jobs = [(s, seed) for s in settings(grid) for seed in seeds]
    records = []
    for setting, seed in tqdm(jobs, desc="sweep", disable=not progress, leave=False):
        metrics = run(**fixed, **setting, seed=seed)
        if not isinstance(metrics, dict):
            raise TypeError(f"run() must return a dict of metrics, got {type(metrics).__name__}")
        records.append({**fixed, **setting, "seed": seed, **metrics})
    return records


def _mean_std(values):
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < len(values):  # a diverged seed makes the setting count as diverged
        return float("nan"), float("nan")
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0)


def summarize(records: list[dict], by: list[str], metrics=METRICS) -> list[dict]:
    """Mean and standard deviation over seeds for each combination of the `by` keys."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        missing = [k for k in by if k not in r]
        if missing:
            raise KeyError(f"record lacks {missing}; it has {sorted(r)}")
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    rows = []
    for key, group in groups.items():
        row = dict(zip(by, key))
        row["n"] = len(group)
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = _mean_std([float(r[m]) for r in group])
        rows.append(row)
    return rows


def best_per(records: list[dict], by: str | list[str], tune: str = "lr", metric: str = "val_acc",
             metrics=METRICS) -> list[dict]:
    """For each value of `by`, the summary row at the `tune` value with the best mean `metric`."""
    by = [by] if isinstance(by, str) else list(by)
    rows = summarize(records, by + [tune], metrics)
    best: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row[k] for k in by)
        score = row[f"{metric}_mean"]
        score = -math.inf if math.isnan(score) else score
        current = best.get(key)
        if current is None or score > current[0]:
            best[key] = (score, row)
    return [row for _, row in best.values()]


def edge_bests(records: list[dict], by: str | list[str], tune: str = "lr", metric: str = "val_acc") -> list[str]:
    """The contenders whose best `tune` value is the smallest or largest value tried for them.

    A best at a grid edge is not a best: the tuner might have gone further. Each
    contender's grid is the set of `tune` values its own records hold.
    """
    by = [by] if isinstance(by, str) else list(by)
    edges = []
    for row in best_per(records, by, tune, metric, metrics=(metric,)):
        key = tuple(row[k] for k in by)
        tried = sorted({r[tune] for r in records if tuple(r[k] for k in by) == key})
        if len(tried) < 3:
            edges.append(f"{_name(by, key)}: only {len(tried)} value(s) of {tune} tried ({tried}); "
                         "a best needs a neighbour on each side")
        elif row[tune] in (tried[0], tried[-1]):
            side = "smallest" if row[tune] == tried[0] else "largest"
            edges.append(f"{_name(by, key)}: best {tune} {row[tune]:g} is the {side} value tried ({tried})")
    return edges


def assert_interior(records: list[dict], by: str | list[str], tune: str = "lr", metric: str = "val_acc") -> None:
    """Raise AssertionError naming every contender whose best `tune` value sits on its grid's edge."""
    edges = edge_bests(records, by, tune, metric)
    if edges:
        raise AssertionError("best at a grid edge (extend the grid): " + "; ".join(edges))


def extend_to_interior(records: list[dict], run, by: str | list[str], ladder, tune: str = "lr",
                       metric: str = "val_acc", max_rounds: int = 4) -> list[dict]:
    """Extend each contender's grid along `ladder` until its best `tune` value is interior.

    Each round, every contender whose best sits on an edge of its grid gets the `ladder` value next
    beyond that edge: `run(contender, [value])` trains it there (`contender` is the dict of its `by`
    keys) and returns the new records. Stops when no best sits on an edge, when the ladder has no
    value beyond an edge, or after `max_rounds` rounds; `edge_bests` on the result names what is left.
    Returns the old records followed by the new ones.
    """
    by = [by] if isinstance(by, str) else list(by)
    ladder = sorted(ladder)
    records = list(records)
    for _ in range(max_rounds):
        added = False
        for row in best_per(records, by, tune, metric, metrics=(metric,)):
            contender = {k: row[k] for k in by}
            tried = sorted({r[tune] for r in records if all(r[k] == v for k, v in contender.items())})
            if len(tried) >= 3 and tried[0] < row[tune] < tried[-1]:
                continue
            lower = [v for v in ladder if v < tried[0]]
            upper = [v for v in ladder if v > tried[-1]]
            beyond = (lower[-1:] if row[tune] == tried[0] else []) + (upper[:1] if row[tune] == tried[-1] else [])
            if beyond:
                records += run(contender, beyond)
                added = True
        if not added:
            break
    return records


def _name(by: list[str], key: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(by, key))


def format_accuracy(mean: float, std: float | None = None) -> str:
    """`93.4 ± 0.5%`, or `diverged` for NaN."""
    if mean is None or not math.isfinite(mean):
        return "diverged"
    text = f"{100 * mean:.1f}"
    if std is not None and math.isfinite(std) and std > 0:
        text += f" ± {100 * std:.1f}"
    return text + "%"


def markdown_table(rows: list[dict], column: str, header: str, notes=None, test_for=None) -> str:
    """A table in the coursework's format: `header | Val Acc | Test Acc | Notes`.

    `notes` is a function of the row (or None) that writes the Notes cell. `test_for(row)`, when given,
    says which rows show their test accuracy; the others print `—` there, so that a table of a sweep
    looks at the test set once, for the row chosen on validation.
    """
    lines = [f"| {header} | " + " | ".join(h for _, h in TABLE_METRICS) + " | Notes |",
             "|---|" + "---:|" * len(TABLE_METRICS) + "---|"]
    for row in rows:
        cells = [NOT_SHOWN if m == "test_acc" and test_for is not None and not test_for(row)
                 else format_accuracy(row[f"{m}_mean"], row.get(f"{m}_std")) for m, _ in TABLE_METRICS]
        note = notes(row) if notes else ""
        lines.append(f"| {row[column]:g} | " if isinstance(row[column], float) else f"| {row[column]} | ")
        lines[-1] += " | ".join(cells) + f" | {str(note).replace('|', '/')} |"
    return "\n".join(lines)


NOT_SHOWN = "—"  # a test accuracy left unread: only the row chosen on validation shows its test accuracy
ACCURACY = re.compile(r"^(\d{1,3}(\.\d+)?)( ± \d{1,3}(\.\d+)?)?%$")


def table_problems(table: str, min_rows: int = 3) -> list[str]:
    """What keeps `table` from the coursework format (an empty list when it is fine)."""
    if not isinstance(table, str):
        return [f"expected a markdown string, got {type(table).__name__}"]
    lines = [line.strip() for line in table.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        return ["expected a header line and a separator line"]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header = split[0]
    problems = []
    if len(header) != 4 or header[1:] != ["Val Acc", "Test Acc", "Notes"] or not header[0]:
        problems.append(f"header should be `<hyperparameter> | Val Acc | Test Acc | Notes`, got {header}")
    if not all(set(c) <= set("-: ") and "-" in c for c in split[1]):
        problems.append("second line should be the separator (|---|---|...)")
    body = split[2:]
    if len(body) < min_rows:
        problems.append(f"expected at least {min_rows} rows, got {len(body)}")
    for i, row in enumerate(body, 1):
        if len(row) != 4:
            problems.append(f"row {i} has {len(row)} cells, expected 4")
            continue
        for column, cell in zip(("Val Acc", "Test Acc"), row[1:3]):
            match = ACCURACY.match(cell)
            if cell == "diverged" or (column == "Test Acc" and cell in (NOT_SHOWN, "-")):
                continue
            if not (match and 0 <= float(match.group(1)) <= 100):
                allowed = "`diverged`" + (" or `—` (not looked at)" if column == "Test Acc" else "")
                problems.append(f"row {i}: {column} {cell!r} is not an accuracy like `93.4 ± 0.5%` (0-100) "
                                f"or {allowed}")
    return problems


# -- a sweep the library can see into: the standard MLP training, batched where it can be ----------

MLP_DEFAULTS = {"depth": 2, "width": 64, "activation": "relu", "init": "he_normal", "optimizer": "sgd",
                "epochs": 10, "batch_size": 64, "momentum": 0.0, "weight_decay": 0.0, "scale": 1.0, "norm": None}
SHAPE_KEYS = ("depth", "width", "activation", "init", "optimizer", "epochs", "batch_size", "norm")  # one stack
SEQUENTIAL_KEYS = ("dropout", "std", "clip_grad_norm")  # understood, but only one run at a time


def sweep_mlp(grid: dict, data, seeds=(0,), fixed: dict | None = None, record_steps: bool = False,
              progress: bool = True, dtype=None, batched: bool = True) -> list[dict]:
    """Train `nets.mlp` with `train.fit`'s recipe for every setting of `grid` (merged with `fixed`) and seed.

    Keys: the learning rate `lr` (required), `momentum`, `weight_decay`, `scale` (initial-weight
    multiplier), and the shape and recipe `depth`, `width`, `activation`, `init`, `optimizer`,
    `epochs`, `batch_size`, `norm` (defaults in MLP_DEFAULTS); `dropout`, `std` and
    `clip_grad_norm` are accepted too. Settings that share a shape and recipe are trained together
    by `batched.fit_many`; a setting that uses a sequential-only key, or an optimizer the batched
    path lacks, runs alone through `train.fit`, and the sweep says so. Records are those of
    `sweep`: the setting, the seed, then `val_acc`, `test_acc`, `train_loss`, `diverged`,
    `val_curve`, `loss_curve` (and `step_loss` with `record_steps`). `dtype` (default float32)
    is the networks' precision on both paths. `batched=False` trains every run alone (the same
    numbers, slower: for checking and timing).
    """
    import torch

    from . import batched as stacked

    fixed = dict(fixed or {})
    overlap = set(fixed) & set(grid)
    if overlap:
        raise ValueError(f"{sorted(overlap)} appear both in the grid and in fixed")
    allowed = set(MLP_DEFAULTS) | {"lr"} | set(SEQUENTIAL_KEYS)
    unknown = (set(grid) | set(fixed)) - allowed
    if unknown:
        raise ValueError(f"sweep_mlp does not know {sorted(unknown)}; it varies {', '.join(sorted(allowed))}. "
                         "For anything else, pass your own training function to sweep().")
    if "lr" not in grid and "lr" not in fixed:
        raise ValueError("sweep_mlp needs a learning rate 'lr' in the grid or in fixed")
    jobs = [({**fixed, **s}, seed) for s in settings(grid) for seed in seeds]
    records: list[dict | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    alone = []
    for i, (setting, _) in enumerate(jobs):
        full = {**MLP_DEFAULTS, **setting}
        if not batched:
            alone.append(i)
        elif set(setting) & set(SEQUENTIAL_KEYS) or full["optimizer"] not in stacked.OPTIMIZERS:
            alone.append(i)
        else:
            groups.setdefault(tuple(full[k] for k in SHAPE_KEYS), []).append(i)
    if alone and batched:
        reasons = sorted({k for i in alone for k in jobs[i][0] if k in SEQUENTIAL_KEYS}
                         | {f"optimizer={jobs[i][0]['optimizer']}" for i in alone
                            if jobs[i][0].get("optimizer", "sgd") not in stacked.OPTIMIZERS})
        print(f"sweep_mlp: {len(alone)} of {len(jobs)} runs train one at a time ({', '.join(reasons)} "
              "cannot be batched)")
    for shape, members in tqdm(groups.items(), desc="sweep groups", disable=not progress, leave=False):
        recipe = dict(zip(SHAPE_KEYS, shape))
        runs = []
        for i in members:
            full = {**MLP_DEFAULTS, **jobs[i][0]}
            runs.append({"lr": full["lr"], "seed": jobs[i][1],
                         **{k: full[k] for k in ("momentum", "weight_decay", "scale")}})
        histories, stack = stacked.fit_many(runs, data, record_steps=record_steps, dtype=dtype or torch.float32,
                                            **recipe)
        _, test_acc = stack.evaluate(data.X_test, data.y_test)
        for k, i in enumerate(members):
            records[i] = _mlp_record(jobs[i], histories[k], float(test_acc[k]), record_steps)
    for i in tqdm(alone, desc="sweep (one at a time)", disable=not progress, leave=False):
        records[i] = _fit_alone(jobs[i], data, record_steps, dtype or torch.float32)
    return records


def _mlp_record(job, history, test_acc: float, record_steps: bool) -> dict:
    setting, seed = job
    diverged = history.diverged
    record = {**setting, "seed": seed, "val_acc": float("nan") if diverged else history.val_acc[-1],
              "test_acc": float("nan") if diverged else test_acc, "train_loss": history.train_loss[-1],
              "diverged": diverged, "val_curve": list(history.val_acc), "loss_curve": list(history.train_loss)}
    if record_steps:
        record["step_loss"] = list(history.step_loss)
    return record


def _fit_alone(job, data, record_steps: bool, dtype) -> dict:
    from . import device, nets, seed_everything, train

    setting, seed = job
    full = {**MLP_DEFAULTS, **setting}
    seed_everything(seed)
    model = nets.mlp(data.X_train.shape[1], int(data.y_train.max()) + 1, depth=full["depth"], width=full["width"],
                     activation=full["activation"], init=full["init"], scale=full["scale"],
                     **{k: full[k] for k in ("norm", "dropout", "std") if k in full}).to(device(), dtype)
    history = train.fit(model, data, epochs=full["epochs"], lr=full["lr"], optimizer=full["optimizer"],
                        momentum=full["momentum"], weight_decay=full["weight_decay"],
                        batch_size=full["batch_size"], clip_grad_norm=full.get("clip_grad_norm"),
                        record_steps=record_steps, progress=False, seed=seed)
    _, test_acc = train.evaluate(model, data.X_test, data.y_test)
    return _mlp_record(job, history, test_acc, record_steps)
