"""A tiny lab in the course's format, fast enough to grade many times in tests."""

import nbformat

ANSWER_1 = '''def scale(values, factor):
    # BEGIN SOLUTION
    return [factor * v for v in values]
    # END SOLUTION'''

ANSWER_2 = '''import torch


def he_std(fan_in):
    # BEGIN SOLUTION
    return (2.0 / fan_in) ** 0.5
    # END SOLUTION'''

CHECK_1 = '''from traindeep import checks

checks.compare("scale", scale([1.0, 2.0], 3.0), [3.0, 6.0])'''

CHECK_2 = '''checks.compare("he_std", he_std(128), 0.125, hint="did you use fan_out?")'''

TEXT_3 = '''**Why does He initialization use a factor of 2?**

<!-- BEGIN SOLUTION -->
ReLU zeroes half of its inputs, halving the second moment.
<!-- END SOLUTION -->'''


def cell(kind, source, id, tags=(), question=None):
    c = nbformat.v4.new_code_cell(source, id=id) if kind == "code" else nbformat.v4.new_markdown_cell(source, id=id)
    if tags:
        c.metadata["tags"] = list(tags)
    if question:
        c.metadata["traindeep"] = {"question": question}
    return c


def tiny_solution():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        cell("markdown", "# Tiny lab", "title"),
        cell("code", ANSWER_1, "a1", ["answer"], "q1"),
        cell("code", CHECK_1, "c1", ["check"], "q1"),
        cell("code", ANSWER_2, "a2", ["answer"], "q2"),
        cell("code", CHECK_2, "c2", ["check"], "q2"),
        cell("code", "def he_units(std, n):\n    return std * (n / 2) ** 0.5", "h1", ["helper"]),
        cell("markdown", TEXT_3, "a3", ["answer"], "q3"),
    ]
    nb.metadata["traindeep"] = {"questions": [
        {"id": "q1", "title": "Scaling", "probes": [
            {"name": "scale", "call": "scale([{a}, {b}], {f})", "draw": {"a": [-9.0, 9.0], "b": [-9.0, 9.0],
                                                                      "f": [0.5, 4.0]}, "points": 2}]},
        {"id": "q2", "title": "He", "probes": [
            {"name": "he_std", "call": "he_std({n})", "draw": {"n": [3, 5000]}, "rtol": 1e-6, "points": 1},
            {"name": "he_std(64) in units", "call": "he_std(64)", "value": "he_units(result, 64)",
             "rule": {"between": [0.99, 1.01]}, "points": 1}]},
        {"id": "q3", "title": "Explain", "points": 2, "manual": True, "rubric": "Mentions that ReLU halves."},
    ]}
    return nb


def with_answers(nb, **sources):
    """A copy of `nb` whose answer cells a1, a2, ... hold the given sources."""
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    for c in nb.cells:
        if c.id in sources:
            c.source = sources[c.id]
    return nb
