"""Inside the sandbox: execute the notebook given on stdin, write what happened to stdout as JSON.

`python -m traindeep.course.runner CELL_TIMEOUT` runs the cells in a fresh
kernel with nbclient. A cell whose kernel uses more than CELL_TIMEOUT seconds
of CPU time, or waits three times that long, is interrupted and the run goes
on, so later questions still count; counting CPU time keeps a cell's limit the
same however busy the machine is. It writes, on stderr, the
index of each cell as it starts (the grader names that cell if the run is
killed) and, at the end on stdout, one JSON object: every cell's outputs,
trimmed, the events (cell interrupted, kernel died) by cell index, and each
cell's seconds (what `labs vet` reads to check the cell limit's margin).

Everything here runs beside student code, so the grader treats this output as
untrusted data: it reads it with a size cap, takes only numbers, bounded text
and probe payloads from it, and writes every message itself.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

PROBE_MIME = "application/vnd.traindeep.probe"  # a JSON string, written by the grader's probe cells
MAX_TEXT = 20_000  # characters kept per text output
MAX_PROBE = 32 << 20  # characters kept per probe payload


def trimmed(output: dict) -> dict:
    """The parts of one output the grader reads, each capped."""
    kind = output.get("output_type")
    if kind == "stream":
        return {"output_type": kind, "name": output.get("name"), "text": str(output.get("text", ""))[:MAX_TEXT]}
    if kind == "error":
        return {"output_type": kind, "ename": str(output.get("ename"))[:200],
                "evalue": str(output.get("evalue"))[:2000]}
    data = {}
    for mime, value in output.get("data", {}).items():
        if mime == PROBE_MIME:
            data[mime] = str(value)[:MAX_PROBE]
        elif mime == "text/plain":
            data[mime] = str(value)[:MAX_TEXT]
        else:
            data[mime] = ""  # images and HTML are counted, not kept
    return {"output_type": kind, "data": data}


def execute(nb, cell_timeout: float, progress) -> dict:
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    events, started, seconds, current = [], {}, {}, {"cell": None, "cpu": 0.0}
    interrupted = set()

    def on_cell_start(cell, cell_index):
        current["cpu"] = _kernel_cpu(client)
        current["cell"] = cell_index
        started[cell_index] = time.monotonic()
        progress.write(f"@cell {cell_index}\n")
        progress.flush()

    def on_cell_executed(cell, cell_index, execute_reply):
        seconds[cell_index] = round(time.monotonic() - started[cell_index], 3)
        current["cell"] = None
        if (cell_index in interrupted or seconds[cell_index] >= WAIT_FACTOR * cell_timeout) and any(
                o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", [])):
            events.append({"event": "cell_timeout", "cell": cell_index})

    def watch():  # interrupt a cell once its kernel has used cell_timeout seconds of CPU time
        while not done.wait(0.1):
            index, pid = current["cell"], _kernel_pid(client)
            if index is None or pid is None or index in interrupted:
                continue
            if _kernel_cpu(client) - current["cpu"] > cell_timeout and current["cell"] == index:
                interrupted.add(index)
                try:
                    os.kill(pid, signal.SIGINT)  # what nbclient's own interrupt sends
                except OSError:
                    pass

    # nbclient's own timeout is the wall-time backstop, for a cell that waits rather than computes.
    client = NotebookClient(nb, timeout=WAIT_FACTOR * cell_timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", resources={"metadata": {"path": os.getcwd()}},
                            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed,
                            iopub_timeout=10, shutdown_kernel="immediate")
    done = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        client.execute()
    except DeadKernelError:
        events.append({"event": "kernel_died", "cell": current["cell"]})
    except Exception as error:  # nbclient's other failures: report, keep what ran
        events.append({"event": "run_failed", "cell": current["cell"], "error": type(error).__name__})
    finally:
        done.set()
    return {"cells": [[trimmed(o) for o in cell.get("outputs", [])] if cell.cell_type == "code" else []
                      for cell in nb.cells],
            "events": events, "seconds": [seconds.get(i) for i in range(len(nb.cells))]}


WAIT_FACTOR = 3  # a cell that waits (sleeps, blocks) is interrupted after this many times the limit


def _kernel_pid(client) -> int | None:
    try:
        return client.km.provisioner.pid
    except AttributeError:
        return None


def _kernel_cpu(client) -> float:
    """CPU seconds used so far by the kernel and every process it started."""
    import psutil

    pid = _kernel_pid(client)
    if pid is None:
        return 0.0
    try:
        kernel = psutil.Process(pid)
        processes = [kernel, *kernel.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + (times.children_user + times.children_system
                                              if process is kernel else 0.0)
    return total


def main(cell_timeout: float) -> None:
    import nbformat

    for folder in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_CONFIG_DIR"):
        if os.environ.get(folder):
            Path(os.environ[folder]).mkdir(parents=True, exist_ok=True)
    nb = nbformat.reads(sys.stdin.read(), as_version=4)
    # The result goes to a private copy of stdout; the kernel inherits /dev/null as its stdout,
    # so nothing it prints at the C level can mix into the result.
    result_stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    result = execute(nb, cell_timeout, sys.stderr)
    json.dump(result, result_stream)
    result_stream.close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
