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


def format_accuracy(mean: float, std: float | None = None) -> str:
    """`93.4 ± 0.5%`, or `diverged` for NaN."""
    if mean is None or not math.isfinite(mean):
        return "diverged"
    text = f"{100 * mean:.1f}"
    if std is not None and math.isfinite(std) and std > 0:
        text += f" ± {100 * std:.1f}"
    return text + "%"


def markdown_table(rows: list[dict], column: str, header: str, notes=None) -> str:
    """A table in the coursework's format: `header | Val Acc | Test Acc | Notes`.

    `notes` is a function of the row (or None) that writes the Notes cell.
    """
    lines = [f"| {header} | " + " | ".join(h for _, h in TABLE_METRICS) + " | Notes |",
             "|---|" + "---:|" * len(TABLE_METRICS) + "---|"]
    for row in rows:
        cells = [format_accuracy(row[f"{m}_mean"], row.get(f"{m}_std")) for m, _ in TABLE_METRICS]
        note = notes(row) if notes else ""
        lines.append(f"| {row[column]:g} | " if isinstance(row[column], float) else f"| {row[column]} | ")
        lines[-1] += " | ".join(cells) + f" | {str(note).replace('|', '/')} |"
    return "\n".join(lines)


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
        for cell in row[1:3]:
            match = ACCURACY.match(cell)
            if cell != "diverged" and not (match and 0 <= float(match.group(1)) <= 100):
                problems.append(f"row {i}: {cell!r} is not an accuracy like `93.4 ± 0.5%` (0-100) or `diverged`")
    return problems
