"""`make bench`: notebook times, widget latency, training-loop and grader overhead, in one run.

Absolute times on shared machines are noisy; the ratios (fit against a bare
loop, grading against executing the notebook alone, the explorer grid before and
after stacking, the book build under load against quiet) are measured side by
side in the same run and are the numbers to compare.

`--build` adds the whole `make book` from a fresh clone at THREADS=1 and 2, with
and without two busy processes beside it (four builds, 30-60 minutes on 2 cores).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from .notebooks import ROOT, read_notebook

BUDGETS = {"book": 90.0, "lectures": 60.0, "solutions": 300.0}  # seconds per notebook on 2 CPU cores


def time_notebook(path: Path, env: dict | None = None) -> float:
    """Seconds to execute a notebook in a fresh kernel (kernel start included).

    `env` adds environment variables for the kernel (the grader's single thread, say).
    """
    from nbclient import NotebookClient

    nb = read_notebook(path)
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": tmp}}).execute()
            return time.perf_counter() - start
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _callback_ms(explorer, settings) -> tuple[float, float]:
    """Median and 95th percentile (ms) of `explorer.update(**setting)` plus `png()` over `settings`."""
    times = []
    for params in settings:
        start = time.perf_counter()
        explorer.update(**params)
        explorer.png()
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def explorer_latency(samples: int = 40, seed: int = 0) -> tuple[float, float]:
    """Median and 95th percentile (ms) of the signal explorer's callback: recompute, redraw, render."""
    from ..widgets import EXPLORER_ACTIVATIONS, EXPLORER_INITS, SignalExplorer

    rng = random.Random(seed)
    return _callback_ms(SignalExplorer(), [
        dict(depth=rng.randint(2, 50), activation=rng.choice(EXPLORER_ACTIVATIONS), init=rng.choice(EXPLORER_INITS),
             scale=10 ** rng.uniform(-1, 1)) for _ in range(samples)])


def lr_explorer_latency(samples: int = 40, seed: int = 0, grid=None) -> tuple[float, float]:
    """Median and 95th percentile (ms) of the learning-rate explorer's callback: look up, redraw, encode.

    Its grid of networks (`widgets.lr.network_runs()`, trained once, a few seconds) is not timed:
    the callback never trains."""
    from ..widgets import LRExplorer

    start_at = {} if grid is None else dict(zip(("optimizer", "lr", "beta", "schedule"), next(iter(grid))))
    explorer = LRExplorer(grid=grid, **start_at)
    rng = random.Random(seed)
    return _callback_ms(explorer, [{name: rng.choice(values) for name, values in explorer.options.items()}
                                   for _ in range(samples)])


def bare_loop(model, X, y, epochs, lr, batch_size, seed, X_val=None, y_val=None):
    """The plainest mini-batch SGD loop on the same data: the baseline for `fit`.

    Like any loop someone would actually use, it looks at validation accuracy
    once per epoch; `fit` does that too, so the ratio isolates fit's own
    bookkeeping (loss and accuracy tracking, divergence check, progress bar).
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if X_val is not None:
            with torch.no_grad():
                accuracy = (model(X_val).argmax(dim=1) == y_val).float().mean().item()
    return accuracy if X_val is not None else None


def fit_overhead(repeats: int = 9, epochs: int = 5, batch_size: int = 64) -> tuple[float, float, float]:
    """(ms per step of fit, ms per step of the bare loop, ratio), from interleaved repeats."""
    from .. import data, nets, train

    splits = data.mnist1d(num_samples=4000)
    steps = epochs * -(-len(splits.X_train) // batch_size)
    ours, bare = [], []
    for r in range(repeats):
        for which in ("fit", "bare") if r % 2 == 0 else ("bare", "fit"):
            torch.manual_seed(r)
            model = nets.mlp(splits.num_features, 10, depth=3, width=256)
            start = time.perf_counter()
            if which == "fit":
                train.fit(model, splits, epochs=epochs, lr=0.01, momentum=0.9, batch_size=batch_size,
                          progress=False, seed=r)
                ours.append(time.perf_counter() - start)
            else:
                bare_loop(model, splits.X_train, splits.y_train, epochs, 0.01, batch_size, r,
                          splits.X_val, splits.y_val)
                bare.append(time.perf_counter() - start)
    # The fastest of several interleaved repeats: the least disturbed by other work on the machine.
    fit_ms, bare_ms = (1000 * min(t) / steps for t in (ours, bare))
    return fit_ms, bare_ms, fit_ms / bare_ms


def prepared_grader(solution: Path):
    """A grader for `solution` after its reference run (once per batch), and that run's seconds."""
    from .grade import Grader

    grader = Grader(solution, timeout=600, cell_timeout=300, seed=0)
    start = time.perf_counter()
    grader.prepare()
    return grader, time.perf_counter() - start


def grader_overhead(grader, solution: Path) -> tuple[float, float, float, float]:
    """(seconds to grade one submission, of which the sandboxed run, to execute it alone,
    sandboxed run / alone), with a `prepared_grader`.

    The reference run (the solution itself, for the probes' expected values) happens once per batch.
    Both timed runs use one thread, as the grader's kernels do, so the ratio is the grader's own cost:
    process and sandbox start, helper cells run again, probes. What the grading adds after the run
    is the trusted judge's own work (lab 1 retrains the student's configuration twice).
    """
    from .intake import collect

    alone = time_notebook(solution, env={"OMP_NUM_THREADS": "1"})
    outcome = grader.grade(collect([solution])[0])
    if outcome.total() != grader.max_points:
        raise RuntimeError(f"the solution scored {outcome.total()} of {grader.max_points}: {outcome.status}")
    return outcome.seconds, outcome.run_seconds, alone, outcome.run_seconds / alone


def batched_speedup(epochs: int = 3, batch_size: int = 64, repeats: int = 3) -> tuple[float, float, float]:
    """(seconds to train 24 coursework-sized MLPs one by one with `train.fit`, stacked with
    `batched.fit_many`, the ratio): 8 learning rates x 3 seeds, width 64, on digits.

    Both are warmed up first and timed `repeats` times, alternating; the fastest of each counts.
    """
    from .. import batched, data, nets, seed_everything, train

    digits = data.digits()
    runs = [{"lr": lr, "seed": s} for lr in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 0.05, 0.5) for s in range(3)]

    def one_by_one(n):
        for run in runs:
            seed_everything(run["seed"])
            model = nets.mlp(digits.num_features, 10, depth=2, width=64, activation="relu", init="he_normal")
            train.fit(model, digits, epochs=n, lr=run["lr"], batch_size=batch_size, progress=False, seed=run["seed"])

    def stacked(n):
        batched.fit_many(runs, digits, epochs=n, width=64, batch_size=batch_size)

    times = {one_by_one: [], stacked: []}
    one_by_one(1), stacked(1)
    for _ in range(repeats):
        for how in times:
            start = time.perf_counter()
            how(epochs)
            times[how].append(time.perf_counter() - start)
    sequential, together = min(times[one_by_one]), min(times[stacked])
    return sequential, together, sequential / together


def coursework_sweeps(epochs: int = 20, seeds=(0, 1, 2)) -> tuple[float, float, float]:
    """(seconds for Coursework 3's graded sweeps with every run alone, batched, the ratio).

    The first grids of the coursework's solution, on MNIST-1D: 10 rates x 3 momenta, then batch size
    and width (4 values each) x 4 rates, 3 seeds, `epochs` epochs (the search's extensions and the
    step-matched runs come on top). Run alone is how the solution trained before the batched path existed.
    """
    from .. import data, sweep

    signals = data.mnist1d()
    rates = [3e-2, 0.1, 0.3, 1.0]
    grids = [{"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, *rates, 3.0], "momentum": [0.0, 0.5, 0.9]},
             {"batch_size": [8, 32, 128, 512], "lr": rates}, {"width": [4, 16, 64, 256], "lr": rates}]
    seconds = []
    for together in (False, True):
        start = time.perf_counter()
        for grid in grids:
            sweep.sweep_mlp(grid, signals, seeds=seeds, fixed={"epochs": epochs}, record_steps=True,
                            progress=False, batched=together)
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1], seconds[0] / seconds[1]


def grader_workers(grader, solution: Path, copies: int = 4) -> tuple[float, float, float]:
    """(seconds to grade `copies` submissions with one worker, with two, one / two), with a `prepared_grader`.

    Each kernel runs one thread, so on two cores two workers should come close to twice as fast.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .intake import collect

    items = collect([solution]) * copies
    seconds = []
    for workers in (1, 2):
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(grader.grade, items))
        seconds.append(time.perf_counter() - start)
        if any(o.total() != grader.max_points for o in outcomes):
            raise RuntimeError(f"a copy of the solution lost points with {workers} worker(s)")
    return seconds[0], seconds[1], seconds[0] / seconds[1]


def ci_run_seconds(root=ROOT) -> tuple[float, int]:
    """(seconds, exit status) of `.ci/run` on a fresh clone of `root`'s committed HEAD.

    The clone starts with nothing: no .venv, no cache, no built book, as CI sees it.
    """
    import subprocess

    with tempfile.TemporaryDirectory(prefix="traindeep-ci-") as folder:
        clone = Path(folder) / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        start = time.perf_counter()
        result = subprocess.run(["bash", ".ci/run"], cwd=clone, env={**os.environ, "CI": "true"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start, result.returncode


def signal_grid_seconds(repeats: int = 2, grid: dict | None = None) -> tuple[float, float, float]:
    """(seconds for the signal explorer's book grid as it was computed when the build-under-load issue
    was filed, network by network at the explorer's inputs today, all at once by `signal_profiles`).

    The grid is `SignalExplorer.STATIC_GRID` (3 depths x 5 activations x 3 inits x 3 scales) unless
    `grid` gives another ({control: values}, in the order depth, activation, init, scale). Network by
    network is `signal_stats` (a model, hooks and `layer_stats`) for each setting: on 256 inputs, its
    default and the explorer's until then, and on the explorer's `EXPLORER_INPUTS`. The first ratio
    is what the page's grid gained; the second, the stacking alone. Each runs once untimed (the first
    autograd call of a process is slow), then `repeats` times, alternating; the fastest of each counts.
    """
    import itertools

    from ..widgets.signal import EXPLORER_INPUTS, SignalExplorer, signal_profiles, signal_stats

    settings = list(itertools.product(*(grid or SignalExplorer.STATIC_GRID).values()))

    def as_filed():
        for setting in settings:
            signal_stats(*setting, n_samples=256)

    def one_by_one():
        for setting in settings:
            signal_stats(*setting, n_samples=EXPLORER_INPUTS)

    def together():
        signal_profiles(settings, n_samples=EXPLORER_INPUTS)

    return tuple(_fastest([as_filed, one_by_one, together], repeats))


def _fastest(functions, repeats: int) -> list[float]:
    """The fastest seconds of each function: each warmed up once, then all timed in turn, `repeats` times."""
    times = {f: [] for f in functions}
    for f in functions:
        f()
    for _ in range(repeats):
        for f in functions:
            start = time.perf_counter()
            f()
            times[f].append(time.perf_counter() - start)
    return [min(times[f]) for f in functions]


BUSY_LOOP = "while True: pass"


def busy_processes(count: int) -> list:
    """`count` Python processes that each keep one core busy: the neighbours of a loaded machine.
    The caller must stop them (`stop_processes`), in a `finally`."""
    import subprocess
    import sys

    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]


def stop_processes(processes) -> None:
    for process in processes:
        process.kill()
        process.wait()


def cached_notebook_seconds(cache: Path) -> dict[str, float]:
    """{notebook path relative to the project: execution seconds} from a book build's jupyter-cache
    (`_build/.jupyter_cache` of the project at `cache.parent.parent`); empty when there is none."""
    import json
    import sqlite3

    database = Path(cache) / "global.db"
    if not database.exists():
        return {}
    project = Path(cache).resolve().parent.parent
    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = connection.execute("select uri, data from nbcache").fetchall()
    seconds = {}
    for uri, data in rows:
        path = Path(uri)
        name = str(path.relative_to(project)) if path.is_relative_to(project) else path.name
        seconds[name] = float(json.loads(data or "{}").get("execution_seconds", float("nan")))
    return seconds


def book_build_seconds(threads: int, busy: int = 0, root=ROOT, limit: float | None = None,
                       notebooks: dict | None = None) -> tuple[float, int | None, float]:
    """(seconds, exit status, load average at the start) of `make book THREADS=threads` on a fresh clone
    of `root`'s committed HEAD, with `busy` busy-loop processes running beside it. A build still running
    after `limit` seconds is stopped (with every process it started): its status is None. `notebooks`, when
    given, receives each executed notebook's seconds from the build's cache (`cached_notebook_seconds`).

    Only the build is timed: the clone borrows `root`'s `.venv` (a symlink; `make -o` keeps make from
    reinstalling into it) and imports its own `traindeep` first (PYTHONPATH), so every notebook and
    the book's cache start from nothing, as on a fresh machine whose environment already exists.
    """
    import subprocess

    venv = Path(root) / ".venv"
    if not (venv / "bin" / "python").exists():
        raise RuntimeError(f"the build bench borrows {venv}; create it first (make venv)")
    with tempfile.TemporaryDirectory(prefix="traindeep-book-") as folder:
        clone = Path(folder) / "clone"
        subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
        (clone / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
        env = {**os.environ, "PYTHONPATH": str(clone)}
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.pop(name, None)  # THREADS decides, as for a user
        command = ["make", "-o", ".venv/.installed", "book", f"THREADS={threads}"]
        plan = subprocess.run([*command[:1], "-n", *command[1:]], cwd=clone, env=env, capture_output=True, text=True)
        if "pip install" in plan.stdout:  # it would install the clone into the borrowed .venv, and break root's
            raise RuntimeError(f"`make book` in a clone would reinstall into {venv}: the build bench expects the "
                               "Makefile's environment target to be .venv/.installed")
        load = os.getloadavg()[0]
        neighbours = busy_processes(busy)
        try:
            start = time.perf_counter()
            build = subprocess.Popen(command, cwd=clone, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                status = build.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(build.pid, signal.SIGKILL)  # make, jupyter-book and the kernels it started
                build.wait()
                status = None
            took = time.perf_counter() - start
            if notebooks is not None:
                notebooks.update(cached_notebook_seconds(clone / "_build" / ".jupyter_cache"))
            return took, status, load
        finally:
            stop_processes(neighbours)


def build_lines(measure=None, limit: float = 3.0, progress=print) -> list[str]:
    """The report's lines for `make book` from a fresh clone at 1 and 2 threads, quiet and beside two busy
    processes, and the ratios, all from this run (`measure` is `book_build_seconds` unless given).

    A busy build is stopped once it takes `limit` times its quiet build at the same thread count (the
    target is 2): its ratio is then reported as "> limit". `progress` gets each line as it is measured.
    """
    measure = measure or book_build_seconds
    lines, seconds, stopped, per_notebook = [], {}, set(), {}
    for threads in (1, 2):  # each thread count's pair back to back: a cut-off bench still gives a ratio
        for busy in (0, 2):
            cap = None if busy == 0 else limit * seconds[threads, 0]
            per_notebook[threads, busy] = {}
            took, status, load = measure(threads, busy=busy, limit=cap, notebooks=per_notebook[threads, busy])
            seconds[threads, busy] = took
            where = "beside two busy processes" if busy else "no added load"
            if status is None:
                stopped.add((threads, busy))
                outcome = f"stopped after {took / 60:.1f} min ({limit:g}x the quiet build) | > {took / 60:.1f} min"
            else:
                outcome = f"exit {status}{'' if status == 0 else ' FAILED'} | {took / 60:.1f} min"
            lines.append(f"| `make book` from a fresh clone, THREADS={threads}, {where} (load {load:.1f} at start), "
                         f"{outcome} | |")
            progress(lines[-1])

    def ratio(a, b):  # a stopped build's time is a lower bound
        if a in stopped and b in stopped:
            return "n/a (both stopped)"
        return f"{'> ' if a in stopped else '< ' if b in stopped else ''}{seconds[a] / seconds[b]:.2f}"

    for threads in (1, 2):
        lines.append(f"| THREADS={threads}: busy / quiet build time | {ratio((threads, 2), (threads, 0))} | ≤ 2 |")
    lines += [f"| quiet: THREADS=1 / THREADS=2 build time | {ratio((1, 0), (2, 0))} | |",
              f"| busy: THREADS=1 / THREADS=2 build time | {ratio((1, 2), (2, 2))} | |"]
    names = sorted({name for times in per_notebook.values() for name in times})
    if names:  # each notebook's execution in each build (a stopped build lists what it finished)
        builds = list(per_notebook)
        lines += ["", "| notebook (seconds in the build) | " + " | ".join(
            f"THREADS={t}, {'busy' if b else 'quiet'}" for t, b in builds) + " |", "|---|" + "---:|" * len(builds)]
        lines += [f"| {name} | " + " | ".join(f"{per_notebook[b][name]:.0f}" if name in per_notebook[b] else "—"
                                                for b in builds) + " |" for name in names]
    return lines


def run_bench(out="_build/bench.md", notebooks: bool = True, grading: bool = True, ci: bool = False,
              build: bool = False, build_limit: float = 3.0) -> str:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lines = ["# Benchmarks", "", f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", ""]
    if notebooks:
        # Each kernel alone, at the thread count `make book` gives it (THREADS, 1 unless asked).
        threads = os.environ.get("OMP_NUM_THREADS", "1")
        lone = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        lines += [f"Notebooks: one kernel at a time, {threads} thread(s) each.", "",
                  "| notebook | seconds | budget | within |", "|---|---:|---:|---|"]
        for folder, budget in BUDGETS.items():
            for path in sorted((ROOT / folder).glob("*.ipynb")):
                seconds = time_notebook(path, env=lone)
                lines.append(f"| {folder}/{path.name} | {seconds:.1f} | {budget:.0f} | "
                             f"{'yes' if seconds <= budget else 'NO'} |")
        lines.append("")
    median, p95 = explorer_latency()
    lr_median, lr_p95 = lr_explorer_latency()
    fit_ms, bare_ms, ratio = fit_overhead()
    lines += ["| measure | value | target |", "|---|---:|---|",
              f"| signal explorer callback, median | {median:.0f} ms | ≤ 150 ms |",
              f"| signal explorer callback, 95th percentile | {p95:.0f} ms | |",
              f"| learning-rate explorer callback, median | {lr_median:.0f} ms | ≤ 100 ms |",
              f"| learning-rate explorer callback, 95th percentile | {lr_p95:.0f} ms | |",
              f"| `train.fit`, per step | {fit_ms:.3f} ms | |",
              f"| bare PyTorch loop (SGD + validation accuracy per epoch), per step | {bare_ms:.3f} ms | |",
              f"| `fit` / bare loop | {ratio:.3f} | ≤ 1.10 |"]
    as_filed, one_by_one, together = signal_grid_seconds()
    lines += [f"| signal explorer's book grid (135 networks) as filed: network by network, 256 inputs | "
              f"{as_filed:.2f} s | |",
              f"| the same, network by network on the explorer's 128 inputs | {one_by_one:.2f} s | |",
              f"| the same, stacked by `signal_profiles` on 128 inputs | {together:.2f} s | |",
              f"| as filed / stacked | {as_filed / together:.1f} | ≥ 5 |",
              f"| network by network / stacked, on the same inputs | {one_by_one / together:.1f} | |"]
    for batch_size in (8, 64):
        one_by_one, stacked, speedup = batched_speedup(batch_size=batch_size)
        lines += [f"| 24 MLPs (8 rates x 3 seeds), batch {batch_size}: `fit` one by one | {one_by_one:.2f} s | |",
                  f"| the same 24 stacked with `batched.fit_many` | {stacked:.2f} s | |",
                  f"| one by one / stacked, batch {batch_size} | {speedup:.1f} | ≥ 5 |"]
    alone, together, speedup = coursework_sweeps()
    lines += [f"| Coursework 3's first grids (186 runs), each run alone | {alone:.1f} s | |",
              f"| the same, batched by `sweep.sweep_mlp` | {together:.1f} s | |",
              f"| alone / batched | {speedup:.1f} | ≥ 3 |"]
    lab = ROOT / "solutions" / "lab01_signal_propagation.ipynb"
    if grading and lab.exists():
        grader, reference = prepared_grader(lab)
        graded, run, alone, overhead = grader_overhead(grader, lab)
        lines += [f"| grading {lab.name}: reference run, once per batch | {reference:.1f} s | |",
                  f"| grading {lab.name}, per submission | {graded:.1f} s | |",
                  f"| of which the sandboxed run with its probes | {run:.1f} s | |",
                  f"| of which the trusted judge after the run (retraining) | {graded - run:.1f} s | |",
                  f"| executing it alone | {alone:.1f} s | |",
                  f"| sandboxed run / executing alone | {overhead:.2f} | ≤ 1.2 |",
                  f"| whole grading / executing alone | {graded / alone:.2f} | |"]
        one, two, speedup = grader_workers(grader, lab)
        lines += [f"| grading 4 copies, one worker | {one:.1f} s | |",
                  f"| grading 4 copies, two workers | {two:.1f} s | |",
                  f"| one worker / two workers | {speedup:.2f} | near 2 on 2 cores |"]
    if build:
        lines += build_lines(limit=build_limit)
    if ci:
        seconds, status = ci_run_seconds()
        lines.append(f"| `.ci/run` on a fresh clone (creating .venv included), exit {status} | "
                     f"{seconds / 60:.1f} min | ≤ 20 min |")
    report = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(report, encoding="utf-8")
    return report
