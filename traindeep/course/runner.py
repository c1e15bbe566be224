"""Execute one notebook in isolation: its own process, folder, time and memory limits.

The grader calls `run_isolated`; it starts `python -m traindeep.course.runner IN OUT`
(inside a bubblewrap sandbox with no network and a read-only view of the
machine when `bwrap` works here), watches its time and memory from outside,
and kills the whole process tree when a limit is passed. Inside, nbclient runs
the cells in a fresh kernel; a cell that passes the per-cell timeout is
interrupted and the run goes on, so later questions still count.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil

MAX_OUTPUT_CHARS = 20_000  # per output, kept in the executed copy; the rest is dropped


@dataclass
class RunResult:
    nb: nbformat.NotebookNode | None  # the executed notebook, None when the run was killed
    problems: list[str]  # what went wrong, in words a student understands
    seconds: float


@functools.cache
def sandbox_command() -> list[str] | None:
    """The bubblewrap prefix when `bwrap` exists and works on this machine, else None."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return None
    # The whole machine read-only (the Python environment may live anywhere, /tmp included);
    # the run's own folder is bound writable on top by run_isolated.
    prefix = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
              "--unshare-net", "--unshare-ipc", "--die-with-parent"]
    try:
        ok = subprocess.run(prefix + ["true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else None


def run_isolated(nb, workdir: Path, timeout: float, cell_timeout: float, memory_gb: float = 4.0,
                 sandbox: bool = True) -> RunResult:
    """Run `nb` in `workdir` (an empty folder the caller owns) and return what happened."""
    workdir = Path(workdir)
    source, executed, progress = workdir / "graded.ipynb", workdir / "executed.ipynb", workdir / "progress"
    nbformat.write(nb, source)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "LANG": "C.UTF-8",
           "JUPYTER_RUNTIME_DIR": str(workdir / ".runtime"), "MPLCONFIGDIR": str(workdir / ".mpl"),
           "IPYTHONDIR": str(workdir / ".ipython"), "TMPDIR": str(workdir), "PYTHONDONTWRITEBYTECODE": "1",
           "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "traindeep.course.runner", str(source), str(executed), str(progress),
               str(cell_timeout)]
    prefix = sandbox_command() if sandbox else None
    if prefix:
        command = prefix + ["--bind", str(workdir), str(workdir), "--chdir", str(workdir)] + command
    start = time.monotonic()
    with open(workdir / "runner.log", "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=log)
        killed = _watch(process, start + timeout, memory_gb * 2**30)
    seconds = time.monotonic() - start
    where = _cell_in_progress(progress)
    if killed == "time":
        return RunResult(None, [f"stopped after the total time limit of {timeout:.0f} s{where}"], seconds)
    if killed == "memory":
        return RunResult(None, [f"stopped: used more than {memory_gb:g} GiB of memory{where}"], seconds)
    if not executed.exists():
        try:
            log = (workdir / "runner.log").read_text(errors="replace")[-300:].strip()
        except OSError:  # the submission may have deleted it
            log = "no log"
        return RunResult(None, [f"the run ended unexpectedly{where}: {log}"], seconds)
    result = nbformat.read(executed, as_version=4)
    return RunResult(result, list(result.metadata.get("traindeep_run", {}).get("problems", [])), seconds)


def _watch(process: subprocess.Popen, deadline: float, memory_limit: float) -> str | None:
    """Wait for the run; kill its whole tree on a limit. Returns 'time', 'memory' or None."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        tree = [root] + _children(root)
        if time.monotonic() > deadline:
            return _kill(process, tree, "time")
        if sum(_rss(p) for p in tree) > memory_limit:
            return _kill(process, tree, "memory")
        time.sleep(0.1)
    for child in _children(root):  # a kernel left behind by a crashed runner
        child.kill()
    return None


def _children(process):
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _kill(process, tree, reason):
    for p in tree:
        try:
            p.kill()
        except psutil.Error:
            pass
    process.wait()
    return reason


def _cell_in_progress(progress: Path) -> str:
    try:
        return f" (while running {progress.read_text().strip()})"
    except OSError:
        return ""


def describe(cell) -> str:
    meta = cell.get("metadata", {})
    label = meta.get("traindeep", {}).get("question")
    tags = meta.get("tags", [])
    kind = "answer" if "answer" in tags else "check" if "check" in tags else "probe" if "probe" in tags else ""
    return f"the {label} {kind} cell" if label and kind else f"cell {cell.get('id')}"


def _execute(source: str, executed: str, progress: str, cell_timeout: float) -> None:
    """The runner's own process: execute with nbclient and always write what ran."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(source, as_version=4)
    problems = []

    started = {}

    def on_cell_start(cell, cell_index):
        started[cell_index] = time.monotonic()
        Path(progress).write_text(describe(cell))

    def on_cell_executed(cell, cell_index, execute_reply):
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout" and len(output.get("text", "")) > MAX_OUTPUT_CHARS:
                output["text"] = output["text"][:MAX_OUTPUT_CHARS] + "\n[output truncated by the grader]\n"
        if time.monotonic() - started[cell_index] >= cell_timeout and any(
                o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", [])):
            problems.append(f"{describe(cell)} took longer than {cell_timeout:.0f} s and was interrupted")

    client = NotebookClient(nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", resources={"metadata": {"path": str(Path(source).parent)}},
                            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed,
                            iopub_timeout=10, shutdown_kernel="immediate")
    try:
        client.execute()
    except DeadKernelError:
        problems.append(f"the kernel died{_cell_in_progress(Path(progress))}; cells after it did not run")
    except Exception as error:  # nbclient's other failures: report, keep what ran
        problems.append(f"the run failed{_cell_in_progress(Path(progress))}: {type(error).__name__}: "
                        f"{str(error)[:200]}")
    nb.metadata["traindeep_run"] = {"problems": problems}
    nbformat.write(nb, executed)


if __name__ == "__main__":
    _execute(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
