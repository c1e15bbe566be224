"""`make verify`: run every notebook under other seed draws and thread counts, and list each claim that fails.

A notebook's asserts are its claims. Checked once, at seed offset 0 and one
thread count, an assert may hold for that draw only. Here each notebook runs
under every offset × thread combination (TRAINDEEP_SEED_OFFSET moves every
random draw, see `traindeep.shifted`; OMP_NUM_THREADS sets PyTorch's threads),
every cell runs even after one fails, and the report names each cell that
raised: notebook, cell id, offset, threads and the assertion's message.
Cells tagged `raises-exception` are meant to raise and are not counted.

Runs share the cores: a one-thread run takes one core, a two-thread run two,
so two one-thread runs go side by side on a two-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .notebooks import ROOT

FOLDERS = ("book", "lectures", "solutions")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Failure:
    cell: str
    ename: str
    message: str


@dataclass
class Run:
    notebook: str
    offset: int
    threads: int
    seconds: float = 0.0
    failures: list = field(default_factory=list)
    problem: str = ""  # the run itself broke (timeout, kernel death): no cell-level result

    @property
    def ok(self) -> bool:
        return not self.failures and not self.problem


def default_notebooks(root=ROOT) -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((Path(root) / folder).glob("*.ipynb"))]


def parse_list(text: str, what: str) -> list[int]:
    """'1,2' -> [1, 2]; a clear error for anything else."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{what} must be a comma-separated list of non-negative integers, got {text!r}")
    return values


def execute(path: Path, offset: int, threads: int, cell_timeout: float) -> Run:
    """Run one notebook once in a child process with the given offset and threads."""
    env = dict(os.environ, TRAINDEEP_SEED_OFFSET=str(offset), PYTHONUNBUFFERED="1")
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    run = Run(str(path), offset, threads)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "traindeep.course.verify", str(path), str(cell_timeout)],
                              env=env, capture_output=True, text=True, timeout=max(60.0, 40 * cell_timeout))
        result = json.loads(done.stdout.strip().splitlines()[-1])
        run.failures = [Failure(**f) for f in result["failures"]]
        run.problem = result.get("problem", "")
    except subprocess.TimeoutExpired:
        run.problem = "the whole run timed out"
    except (ValueError, IndexError, KeyError, TypeError):
        tail = (done.stderr or "").strip().splitlines()[-1:] if "done" in locals() else []
        run.problem = "the run ended without a result" + (f": {tail[0][:200]}" if tail else "")
    run.seconds = time.monotonic() - start
    return run


def _execute_here(path: Path, cell_timeout: float) -> dict:
    """In the child: execute every cell, keep going past errors, return the failing cells."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    problem = ""
    try:
        client.execute()
    except CellTimeoutError as error:
        problem = f"a cell timed out after {cell_timeout:g} s: {str(error).splitlines()[0][:150]}"
    except DeadKernelError:
        problem = "the kernel died"
    failures = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "raises-exception" in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = " ".join(str(output.get("evalue", "")).split())
                failures.append({"cell": cell.get("id", "?"), "ename": output.get("ename", ""),
                                 "message": message[:300]})
    return {"failures": failures, "problem": problem}


def verify(notebooks, offsets=(1, 2), threads=(1, 2), cores=None, cell_timeout=600.0, log=print,
           out=None) -> list[Run]:
    """Every notebook under every offset × threads; runs packed onto the cores by their thread count.

    With `out`, the report is rewritten after every run, so a long verify that is stopped keeps what it found.
    """
    cores = cores or os.cpu_count() or 1
    jobs = [(Path(nb), o, t) for t in sorted(set(threads)) for o in offsets for nb in notebooks]
    runs: list[Run] = []
    lock = threading.Lock()
    for count in sorted(set(threads)):
        batch = [j for j in jobs if j[2] == count]
        with ThreadPoolExecutor(max(1, cores // count)) as pool:
            for run in pool.map(lambda job: execute(job[0], job[1], job[2], cell_timeout), batch):
                with lock:
                    runs.append(run)
                    state = "ok" if run.ok else run.problem or f"{len(run.failures)} failing cell(s)"
                    log(f"{run.notebook}  offset {run.offset}  threads {run.threads}  {run.seconds:6.1f}s  {state}")
                    if out is not None:
                        Path(out).parent.mkdir(parents=True, exist_ok=True)
                        Path(out).write_text(report(runs))
    return runs


def report(runs: list[Run], root=ROOT) -> str:
    """The markdown table `make verify` writes: one row per run, then every failing claim."""
    def name(path):
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return str(path)

    failing = [r for r in runs if not r.ok]
    claims = sum(len(r.failures) for r in runs)
    lines = ["# make verify", "",
             f"{len(runs)} runs, {len(failing)} with failures, {claims} failing cell(s).", "",
             "| notebook | offset | threads | seconds | result |", "|---|---:|---:|---:|---|"]
    for r in sorted(runs, key=lambda r: (name(r.notebook), r.offset, r.threads)):
        result = "ok" if r.ok else (r.problem or f"{len(r.failures)} failing cell(s)")
        lines.append(f"| {name(r.notebook)} | {r.offset} | {r.threads} | {r.seconds:.1f} | {result} |")
    if failing:
        lines += ["", "## Failing claims", "", "| notebook | cell | offset | threads | error |",
                  "|---|---|---:|---:|---|"]
        for r in sorted(failing, key=lambda r: (name(r.notebook), r.offset, r.threads)):
            for f in r.failures:
                message = f"{f.ename}: {f.message}".replace("|", "\\|")
                lines.append(f"| {name(r.notebook)} | {f.cell} | {r.offset} | {r.threads} | {message} |")
            if r.problem:
                lines.append(f"| {name(r.notebook)} | — | {r.offset} | {r.threads} | {r.problem} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the child process of `execute`
    print(json.dumps(_execute_here(Path(sys.argv[1]), float(sys.argv[2]))))
