"""The trusted side of a probe: compute its value from the raw data a student's run returned.

`python -m traindeep.course.judge CALL_TIMEOUT` never executes student code.
It reads two JSON lines on stdin: first the lab's helper cells (instructor
code: data, reference networks, the training routine), which it runs while
the student's notebook is still executing; then the tasks, each a probe's
`value` expression and the payload its `call` produced in the student's
kernel. Each expression is evaluated with `result` bound to the decoded
payload (NumPy arrays for tensors), so every statistic and every retraining
happens here, where the student cannot patch `torch` or `math`. It writes one
JSON line: {key: {"value": ...} or {"error": ...}}.
"""

from __future__ import annotations

import json
import os
import signal
import sys


class CallTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CallTimeout


def prepare(helpers: list[str]) -> dict:
    """The namespace the values are computed in: NumPy, torch, math and the lab's helper cells."""
    import math

    import matplotlib
    import numpy as np
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(1)
    namespace = {"math": math, "np": np, "torch": torch, "__name__": "__judge__"}
    for source in helpers:
        exec(compile(source, "<helper cell>", "exec"), namespace)
    return namespace


def evaluate(namespace: dict, tasks: list[dict], call_timeout: float) -> dict:
    from .payload import PayloadError, decode, plain

    values = {}
    signal.signal(signal.SIGALRM, _alarm)
    for task in tasks:
        key = task["key"]
        try:
            result = decode(task["payload"])
            signal.setitimer(signal.ITIMER_REAL, call_timeout)
            try:
                value = eval(task["value"], namespace, {"result": result})
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            values[key] = {"value": plain(value)}
        except CallTimeout:
            values[key] = {"error": f"judging took longer than {call_timeout:.0f} s"}
        except PayloadError as error:
            values[key] = {"error": f"unreadable result: {error}"}
        except Exception as error:  # the student's data made the instructor's check fail
            values[key] = {"error": f"{type(error).__name__}: {error}"[:300]}
    return values


def main(call_timeout: float) -> None:
    # Helper cells may print or plot; only the final line on the private copy of stdout is the answer.
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    namespace = prepare(json.loads(sys.stdin.readline())["helpers"])  # while the student's run goes on
    line = sys.stdin.readline()
    tasks = json.loads(line)["tasks"] if line.strip() else []
    answer.write(json.dumps(evaluate(namespace, tasks, call_timeout)) + "\n")
    answer.close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
