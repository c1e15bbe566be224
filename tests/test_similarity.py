"""The similarity report: a planted copy is flagged, honest answers are not, the template never counts.

The answers below are lab 1's questions 1-3, written by hand in three styles
(Alice, Ben, and the solution itself); the copy is Ben's with every name
changed, statements and branches reordered and comments dropped.
"""

import csv
import re

import nbformat
import pytest
from labtools import ROOT
from markupsafe import escape
from tinylab import cell, tiny_solution

from traindeep.__main__ import main
from traindeep.course.labformat import is_answer, question_of
from traindeep.course.notebooks import read_notebook
from traindeep.course.similarity import compare, template_of, write_report

LAB01 = ROOT / "solutions" / "lab01_signal_propagation.ipynb"

ALICE = {
"q1": '''def fans(weight):
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    rows, cols = weight.size()
    return cols, rows


def xavier_uniform_bound(fan_in, fan_out, gain=1.0):
    """The r of U(-r, r) in Glorot's uniform initialization."""
    variance = 2.0 / (fan_in + fan_out)
    return gain * (3 * variance) ** 0.5


def xavier_uniform_(weight, gain=1.0):
    """Fill `weight` in place from U(-r, r) and return it."""
    r = xavier_uniform_bound(weight.shape[1], weight.shape[0], gain)
    with torch.no_grad():
        weight.copy_((torch.rand_like(weight) * 2 - 1) * r)
    return weight


def xavier_normal_(weight, gain=1.0):
    """Fill `weight` in place from N(0, sigma^2) with Glorot's sigma and return it."""
    n_in, n_out = fans(weight)
    sigma = gain * (2 / (n_in + n_out)) ** 0.5
    with torch.no_grad():
        weight.copy_(sigma * torch.randn_like(weight))
    return weight
''',
"q2": '''def he_std(fan_in, fan_out, negative_slope=0.0, mode="fan_in"):
    """He's standard deviation for a (leaky) ReLU layer, from the fan the mode names."""
    fans_by_mode = {"fan_in": fan_in, "fan_out": fan_out}
    if mode not in fans_by_mode:
        raise ValueError("unknown mode " + repr(mode) + ", use fan_in or fan_out")
    gain_squared = 2.0 / (1.0 + negative_slope * negative_slope)
    return (gain_squared / fans_by_mode[mode]) ** 0.5


def he_normal_(weight, negative_slope=0.0, mode="fan_in"):
    """He (Kaiming) normal initialization, in place."""
    n_in, n_out = fans(weight)
    s = he_std(n_in, n_out, negative_slope, mode)
    with torch.no_grad():
        weight.copy_(s * torch.randn_like(weight))
    return weight


def lecun_normal_(weight):
    """LeCun normal initialization, in place."""
    n_in = weight.shape[1]
    with torch.no_grad():
        weight.copy_(torch.randn_like(weight) / n_in ** 0.5)
    return weight
''',
"q3": '''def activation_spreads(model, x):
    """Per activation: std across the batch of each unit, averaged over units. Input side first."""
    result = []
    h = x
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, torch.nn.Linear):
                continue
            result.append(float(h.std(0).mean()))
    return result


def backward_signals(model, x, y):
    """Per activation: the norm of dL/dh for the mean cross-entropy. Input side first."""
    kept = []
    h = x
    for module in model:
        h = module(h)
        if not isinstance(module, torch.nn.Linear):
            kept.append(h)
    loss = torch.nn.functional.cross_entropy(h, y)
    grads = torch.autograd.grad(loss, kept)
    return [float(g.norm()) for g in grads]


def weight_grad_norms(model, x, y):
    """Norm of each hidden Linear layer's weight gradient after one backward pass. Input side first."""
    hidden = [m for m in model if isinstance(m, torch.nn.Linear)][:-1]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [m.weight for m in hidden])
    return [float(g.norm()) for g in grads]
''',
}

BEN = {
"q1": '''def fans(weight):
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    # Linear stores (out, in)
    return weight.shape[1], weight.shape[0]


def xavier_uniform_bound(fan_in, fan_out, gain=1.0):
    """The r of U(-r, r) in Glorot's uniform initialization."""
    return math.sqrt(6 / (fan_in + fan_out)) * gain


def xavier_uniform_(weight, gain=1.0):
    """Fill `weight` in place from U(-r, r) and return it."""
    limit = xavier_uniform_bound(*fans(weight), gain=gain)
    weight.data.uniform_(-limit, limit)
    return weight


def xavier_normal_(weight, gain=1.0):
    """Fill `weight` in place from N(0, sigma^2) with Glorot's sigma and return it."""
    a, b = fans(weight)
    weight.data.normal_(mean=0, std=gain * math.sqrt(2 / (a + b)))
    return weight
''',
"q2": '''def he_std(fan_in, fan_out, negative_slope=0.0, mode="fan_in"):
    """He's standard deviation for a (leaky) ReLU layer, from the fan the mode names."""
    if mode == "fan_in":
        n = fan_in
    elif mode == "fan_out":
        n = fan_out
    else:
        raise ValueError(f"mode should be fan_in or fan_out, not {mode}")
    gain = math.sqrt(2 / (1 + negative_slope ** 2))
    return gain / math.sqrt(n)


def he_normal_(weight, negative_slope=0.0, mode="fan_in"):
    """He (Kaiming) normal initialization, in place."""
    weight.data.normal_(0, he_std(*fans(weight), negative_slope=negative_slope, mode=mode))
    return weight


def lecun_normal_(weight):
    """LeCun normal initialization, in place."""
    weight.data.normal_(0, 1 / math.sqrt(fans(weight)[0]))
    return weight
''',
"q3": '''def activation_spreads(model, x):
    """Per activation: std across the batch of each unit, averaged over units. Input side first."""
    out = []
    for i, layer in enumerate(model):
        x = layer(x).detach()
        if type(layer) is not torch.nn.Linear:
            out.append(x.std(dim=0).mean().item())
    return out


def backward_signals(model, x, y):
    """Per activation: the norm of dL/dh for the mean cross-entropy. Input side first."""
    acts = []

    def keep(module, inputs, output):
        output.retain_grad()
        acts.append(output)

    handles = [m.register_forward_hook(keep) for m in model if not isinstance(m, torch.nn.Linear)]
    try:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad()
    return [a.grad.norm().item() for a in acts]


def weight_grad_norms(model, x, y):
    """Norm of each hidden Linear layer's weight gradient after one backward pass. Input side first."""
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    norms = [m.weight.grad.norm().item() for m in model if isinstance(m, torch.nn.Linear)]
    model.zero_grad()
    return norms[:-1]
''',
}

# Ben's answers copied: names changed, statements and functions reordered, comments dropped.
COPY_OF_BEN = {
"q1": '''def fans(weight):
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    return weight.shape[1], weight.shape[0]


def xavier_uniform_bound(fan_in, fan_out, gain=1.0):
    """The r of U(-r, r) in Glorot's uniform initialization."""
    return math.sqrt(6 / (fan_in + fan_out)) * gain


def xavier_uniform_(weight, gain=1.0):
    """Fill `weight` in place from U(-r, r) and return it."""
    bound = xavier_uniform_bound(*fans(weight), gain=gain)
    weight.data.uniform_(-bound, bound)
    return weight


def xavier_normal_(weight, gain=1.0):
    """Fill `weight` in place from N(0, sigma^2) with Glorot's sigma and return it."""
    fi, fo = fans(weight)
    weight.data.normal_(mean=0, std=gain * math.sqrt(2 / (fi + fo)))
    return weight
''',
"q2": '''def he_std(fan_in, fan_out, negative_slope=0.0, mode="fan_in"):
    """He's standard deviation for a (leaky) ReLU layer, from the fan the mode names."""
    g = math.sqrt(2 / (1 + negative_slope ** 2))
    if mode == "fan_out":
        fan = fan_out
    elif mode == "fan_in":
        fan = fan_in
    else:
        raise ValueError(f"mode should be fan_in or fan_out, not {mode}")
    return g / math.sqrt(fan)


def he_normal_(weight, negative_slope=0.0, mode="fan_in"):
    """He (Kaiming) normal initialization, in place."""
    weight.data.normal_(0, he_std(*fans(weight), negative_slope=negative_slope, mode=mode))
    return weight


def lecun_normal_(weight):
    """LeCun normal initialization, in place."""
    weight.data.normal_(0, 1 / math.sqrt(fans(weight)[0]))
    return weight
''',
"q3": '''def activation_spreads(model, x):
    """Per activation: std across the batch of each unit, averaged over units. Input side first."""
    spreads = []
    for k, m in enumerate(model):
        x = m(x).detach()
        if type(m) is not torch.nn.Linear:
            spreads.append(x.std(dim=0).mean().item())
    return spreads


def backward_signals(model, x, y):
    """Per activation: the norm of dL/dh for the mean cross-entropy. Input side first."""
    outputs = []

    def remember(mod, inp, out):
        out.retain_grad()
        outputs.append(out)

    hooks = [mod.register_forward_hook(remember) for mod in model if not isinstance(mod, torch.nn.Linear)]
    try:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    model.zero_grad()
    return [o.grad.norm().item() for o in outputs]


def weight_grad_norms(model, x, y):
    """Norm of each hidden Linear layer's weight gradient after one backward pass. Input side first."""
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    result = [m.weight.grad.norm().item() for m in model if isinstance(m, torch.nn.Linear)]
    model.zero_grad()
    return result[:-1]
''',
}


def submission(folder, name, answers):
    """The student version of lab 1 with `answers` ({question: source}) filled in, saved as folder/name.ipynb."""
    nb = read_notebook(ROOT / "labs" / LAB01.name)
    for c in nb.cells:
        if is_answer(c) and question_of(c) in answers:
            c.source = answers[question_of(c)]
    nbformat.write(nb, folder / f"{name}.ipynb")


def solution_answers():
    nb = read_notebook(LAB01)
    return {question_of(c): c.source.replace("    # BEGIN SOLUTION\n", "").replace("    # END SOLUTION\n", "")
            for c in nb.cells if is_answer(c) and question_of(c) in ("q1", "q2", "q3")}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    subs = tmp_path_factory.mktemp("similarity") / "subs"
    subs.mkdir()
    submission(subs, "alice", ALICE)
    submission(subs, "ben", BEN)
    submission(subs, "carol", solution_answers())
    submission(subs, "dan", COPY_OF_BEN)
    submission(subs, "unfilled", {})
    return subs


def scores(pairs):
    return {(p.student_a, p.student_b, p.question): p.similarity for p in pairs}


def test_a_renamed_and_reordered_copy_is_flagged(batch):
    pairs, texts, notes = compare(LAB01, [batch])
    found = scores(pairs)
    assert all(found[("ben", "dan", q)] >= 0.75 for q in ("q1", "q2", "q3")), found
    assert "unfilled" in texts and texts["unfilled"] == {}, "an unfilled lab has no answers to compare"
    assert notes == []


def test_independent_answers_are_not_flagged(batch):
    pairs, _, _ = compare(LAB01, [batch])
    honest = {k: v for k, v in scores(pairs).items() if {k[0], k[1]} != {"ben", "dan"}}
    assert len(honest) == 5 * 3 and max(honest.values()) < 0.4, sorted(honest.items(), key=lambda kv: -kv[1])[:5]


def test_the_report_ranks_flags_and_escapes(batch, tmp_path):
    out = tmp_path / "report"
    flagged = write_report(LAB01, [batch], out, threshold=0.6)
    assert [(p.student_a, p.student_b) for p in flagged] == [("ben", "dan")] * 3
    with open(out / "similarity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student_a"], r["student_b"], r["flagged"]) for r in rows[:3]] == [("ben", "dan", "yes")] * 3
    assert rows[3]["flagged"] == "" and len(rows) == 6 * 3
    assert [float(r["similarity"]) for r in rows] == sorted((float(r["similarity"]) for r in rows), reverse=True)
    page = (out / "index.html").read_text()
    assert "evidence for a person to weigh, not a verdict" in page
    assert page.count("<mark>") >= 3 and "weight.data.normal_(0, he_std(*fans(weight)" in page
    marked = re.findall(r"<mark>(.*?)</mark>", page, re.S)
    given = {str(escape(line.strip())) for a in template_of(read_notebook(LAB01)).values()
             for line in a.text.splitlines() if len(line.strip()) >= 12}
    assert marked and not [g for g in given for m in marked if g in m], "the template's own lines are never marked"
    assert "<script" not in page


TEMPLATE = """def train_loop(model, batches, lr):
    \"\"\"Given: the loop every student keeps as it is.\"\"\"
    history = []
    for inputs, targets in batches:
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= lr * parameter.grad
        history.append(loss.item())
    return history


def clip_norm(grads, max_norm):
    # BEGIN SOLUTION
    total = sum(float((g * g).sum()) for g in grads) ** 0.5
    return [g * min(1.0, max_norm / (total + 1e-12)) for g in grads]
    # END SOLUTION"""


def test_the_template_never_counts(tmp_path):
    """Two students keep a long given function and answer differently: no match, and nothing highlighted."""
    lab = tiny_solution()
    lab.cells.insert(1, cell("code", TEMPLATE, "a4", ["answer"], "q4"))
    lab.metadata["traindeep"]["questions"].append({"id": "q4", "title": "Clip", "probes": [
        {"name": "clip", "call": "clip_norm([1.0], 1.0)", "points": 1}]})
    solution = tmp_path / "lab.ipynb"
    nbformat.write(lab, solution)
    given = TEMPLATE.split("def clip_norm")[0]
    subs = tmp_path / "subs"
    subs.mkdir()
    for name, body in [("erin", "    norm = math.sqrt(sum((g ** 2).sum().item() for g in grads))\n"
                                "    scale = max_norm / max(norm, max_norm)\n    return [scale * g for g in grads]"),
                       ("finn", "    squares = [torch.sum(t * t) for t in grads]\n"
                                "    factor = min(1, max_norm / (torch.stack(squares).sum().sqrt() + 1e-9))\n"
                                "    return [t * factor for t in grads]")]:
        nb = nbformat.from_dict(nbformat.reads(nbformat.writes(lab), as_version=4))
        next(c for c in nb.cells if c.id == "a4").source = given + "def clip_norm(grads, max_norm):\n" + body
        nbformat.write(nb, subs / f"{name}.ipynb")
    pairs, texts, _ = compare(solution, [subs])
    (q4,) = [p for p in pairs if p.question == "q4"]
    assert "def train_loop" in texts["erin"]["q4"].text, "the given code is part of each answer"
    assert q4.similarity == 0.0 and q4.slices_a.size == 0, (q4.share_a, q4.share_b)
    # The same two answers without the lab's template would match on the given loop.
    unmarked = tmp_path / "unmarked.ipynb"
    bare = nbformat.from_dict(nbformat.reads(nbformat.writes(lab), as_version=4))
    next(c for c in bare.cells if c.id == "a4").source = "def clip_norm(grads, max_norm):\n    # BEGIN SOLUTION\n" \
        "    return grads\n    # END SOLUTION"
    nbformat.write(bare, unmarked)
    pairs, _, _ = compare(unmarked, [subs])
    assert [p.similarity for p in pairs if p.question == "q4"][0] > 0.5


def test_student_text_is_escaped_and_never_run(tmp_path):
    lab = tiny_solution()
    solution = tmp_path / "lab.ipynb"
    nbformat.write(lab, solution)
    subs = tmp_path / "subs"
    subs.mkdir()
    ran = tmp_path / "ran"
    evil = (f"def scale(values, factor):\n    open({str(ran)!r}, 'w').write('x')  # </pre><script>alert(1)"
            "</script>\n    return [v * factor for v in values if v is not None and not isinstance(v, str)]\n")
    for name in ("gil", "hal"):
        nb = nbformat.from_dict(nbformat.reads(nbformat.writes(lab), as_version=4))
        next(c for c in nb.cells if c.id == "a1").source = evil
        nbformat.write(nb, subs / f"{name}.ipynb")
    out = tmp_path / "report"
    flagged = write_report(solution, [subs], out)
    page = (out / "index.html").read_text()
    assert "q1" in [p.question for p in flagged]  # (their copied q3 text is flagged too)
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page
    assert not ran.exists()


def test_similarity_command(batch, tmp_path, capsys):
    assert main(["similarity", str(LAB01), str(batch), "--out", str(tmp_path / "r"), "--threshold", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert "ben / dan" in printed and (tmp_path / "r" / "index.html").exists()
    assert main(["similarity", str(LAB01), str(batch), "--out", str(tmp_path / "r"), "--threshold", "2"]) == 2
