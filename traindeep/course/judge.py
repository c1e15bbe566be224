"""The trusted side of a probe: compute its value from the raw data a student's run returned.

`python -m traindeep.course.judge CALL_TIMEOUT` never executes student code.
It reads on stdin first a JSON line with the lab's helper cells (instructor
code: data, reference networks, the training routine), which it runs while
the student's notebook is still executing; then the tasks, one at a time,
each a JSON line (a probe's key and `value` expression) followed by a line
holding the payload its `call` emitted in the student's kernel, as it was
emitted. Each expression is evaluated with `result` bound to the decoded
payload (NumPy arrays for tensors), so every statistic and every retraining
happens here, where the student cannot patch `torch` or `math`. It writes one
JSON line: {key: {"value": ...} or {"error": ...}}; a value larger than
MAX_VALUE_CHARS as JSON is an error, so what returns to the grader is small.
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


MAX_VALUE_CHARS = 1 << 20  # the labs' values are lists of a few thousand numbers at most


def evaluate(namespace: dict, expression: str, text: str, call_timeout: float) -> dict:
    """{"value": ...} or {"error": ...}: `expression` with `result` bound to the emitted payload `text`."""
    from .payload import PayloadError, parse, plain

    signal.signal(signal.SIGALRM, _alarm)
    try:
        _, result, error = parse(text)
        if error is not None:
            return {"error": error}
        signal.setitimer(signal.ITIMER_REAL, call_timeout)
        try:
            value = plain(eval(expression, namespace, {"result": result}))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if len(json.dumps(value)) > MAX_VALUE_CHARS:
            return {"error": f"the value is larger than {MAX_VALUE_CHARS >> 20} MB as JSON, far more than "
                             "the question asks for"}
        return {"value": value}
    except CallTimeout:
        return {"error": f"judging took longer than {call_timeout:.0f} s"}
    except PayloadError as error:
        return {"error": f"unreadable result: {error}"}
    except Exception as error:  # the student's data made the instructor's check fail
        return {"error": f"{type(error).__name__}: {error}"[:300]}


def main(call_timeout: float) -> None:
    # Helper cells may print or plot; only the final line on the private copy of stdout is the answer.
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    namespace = prepare(json.loads(sys.stdin.readline())["helpers"])  # while the student's run goes on
    values = {}
    while header := sys.stdin.readline():
        task = json.loads(header)
        values[task["key"]] = evaluate(namespace, task["value"], sys.stdin.readline(), call_timeout)
    answer.write(json.dumps(values) + "\n")
    answer.close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
