"""The grader on a tiny lab: honest, incomplete, runaway and hostile submissions, graded side by side.

The hostile ones are grouped by the class of attack they try (see the README's
grading section for what the sandbox guarantees): reading the solution or
classmates, killing or forging, using root, escaping limits, and malformed
input. Each must leave classmates' rows honest, the submissions, the package
and the outputs unchanged, score 0 where it answered nothing, and leave no
process behind.
"""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from tinylab import ANSWER_1, ANSWER_2, tiny_solution, with_answers

from traindeep.__main__ import main
from traindeep.course import sandbox
from traindeep.course.grade import Grader, splice
from traindeep.course.intake import collect, sanitized
from traindeep.course.labformat import (
    LabFormatError,
    forbidden_uses,
    is_unanswered,
    questions,
    stub_source,
    suspicious_uses,
)
from traindeep.course.labs import lab_from_solution
from traindeep.course.report import write_report

PACKAGE = Path(sandbox.PACKAGE)
pytestmark = pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")
WRONG_HE = "def he_std(fan_in):\n    return (1.0 / fan_in) ** 0.5"
RIGHT_HE = "def he_std(fan_in):\n    return (2.0 / fan_in) ** 0.5"
RIGHT_SCALE = "def scale(values, factor):\n    return [factor * v for v in values]"
MARKER = "traindeep-attack-daemon"

# Paths an attack aims at; filled in when the submission is written.
SNOOP = '''import json, os, sys
hits, seen = [], 0
targets = [{solution!r}, {submissions!r}, os.path.dirname({solution!r}), {package!r}, '/', '/tmp', os.getcwd()]
targets += sys.path + [os.path.dirname(p) for p in sys.path]
for pid in (p for p in os.listdir('/proc') if p.isdigit()):
    targets += [f'/proc/{pid}/cwd', f'/proc/{pid}/root', f'/proc/{pid}/fd']
    try:
        targets += open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='ignore').split('\\0')
    except OSError:
        pass
for target in targets:
    walk = os.walk(target) if os.path.isdir(target) else [(os.path.dirname(target), [], [os.path.basename(target)])]
    for root, dirs, files in walk:
        dirs[:] = [d for d in dirs if d not in ('usr', 'proc', 'sys', 'dev', 'site-packages', 'lib')]
        for name in files:
            seen += 1
            try:
                text = open(os.path.join(root, name), errors='ignore').read(5_000_000)
            except OSError:
                continue
            if 'factor * v for v in values' in text:
                hits.append(os.path.join(root, name))
        if seen > 5000:
            break
if hits:
    exec({right_scale!r})
else:
    def scale(values, factor):
        return values'''

KILL_EVERYONE = '''import os, signal, time
time.sleep(2)
for pid in (int(p) for p in os.listdir('/proc') if p.isdigit()):
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
for pid in ({grader_pid}, -1):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass'''

FORGE_HOOK = '''import json
from IPython.display import publish_display_data

def _forge(*args, **kwargs):
    for i in range(6):
        for value in ([3.0, 6.0], 0.125, 1.0):
            publish_display_data({"application/vnd.traindeep.probe": json.dumps({"probe": i, "value": value})})

get_ipython().events.register("pre_run_cell", _forge)
get_ipython().events.register("post_run_cell", _forge)

def scale(values, factor):
    return values'''

FORGE_QUIETLY = WRONG_HE + '''
import json, IPython.display
_real = IPython.display.publish_display_data

def _quiet_forgery(data, *args, **kwargs):
    mime = "application/vnd.traindeep.probe"
    if mime in data:
        message = json.loads(data[mime])
        message.pop("error", None)
        message["value"] = 0.125 if message["probe"] else [3.0, 6.0]
        data = {mime: json.dumps(message)}
    return _real(data, *args, **kwargs)

IPython.display.publish_display_data = _quiet_forgery'''

PATCH_TORCH = WRONG_HE + '''
import builtins, math, numpy, torch
math.isclose = lambda *a, **k: True
builtins.abs = lambda x: 0.0
numpy.std = lambda *a, **k: 0.125
torch.Tensor.std = lambda self, *a, **k: torch.tensor(0.125)
_init = torch.nn.Sequential.__init__
torch.nn.Sequential.__init__ = lambda self, *layers: _init(self)'''

ROOT_ATTACKS = '''import ctypes, errno, fcntl, os, subprocess, termios
attempts = {}
for command in (["mount", "-o", "remount,rw", "/"], ["mount", "-t", "tmpfs", "none", "/opt"]):
    try:
        attempts[" ".join(command)] = subprocess.run(command, capture_output=True).returncode
    except OSError as error:
        attempts[" ".join(command)] = error.errno
libc = ctypes.CDLL(None, use_errno=True)
attempts["mount(2)"] = libc.mount(b"none", b"/", None, 32, None)  # MS_REMOUNT
try:
    os.setuid(0)
    attempts["setuid"] = "ROOT"
except OSError as error:
    attempts["setuid"] = error.errno
for target in [{package!r} + "/pwned.py", "/opt/traindeep/traindeep/pwned.py", {submissions!r} + "/perfect.ipynb",
               {out!r} + "/grades.csv", "/usr/pwned", {solution!r}]:
    try:
        with open(target, "w") as f:
            f.write("pwned")
        attempts[target] = "WROTE"
    except OSError as error:
        attempts[target] = error.errno
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        attempts["tiocsti"] = "PUSHED"
    except OSError:
        pass
assert "WROTE" not in attempts.values() and "ROOT" not in attempts.values(), attempts
''' + RIGHT_SCALE

DAEMON = '''import os, subprocess, sys
code = """import os, time
time.sleep(4)
for path in [{out!r} + '/grades.csv', {submissions!r} + '/perfect.ipynb']:
    try:
        open(path, 'w').write('pwned')
    except OSError:
        pass
while True:
    pass
"""
subprocess.Popen([sys.executable, "-c", code, "{marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", code, "{marker}"])
    os._exit(0)
''' + RIGHT_SCALE

FILL_EVERYTHING = '''import os
for path in ("/dev/shm/fill", "/tmp/fill", "fill", "/dev/fill"):
    try:
        with open(path, "wb") as f:
            for _ in range(3000):
                f.write(b"x" * 2**20)
    except OSError:
        pass
''' + RIGHT_SCALE

FORK_BOMB = '''import os, time
for _ in range(5000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
    except OSError:
        break
''' + RIGHT_SCALE

# Second round (issue 21). The tiny lab's q1 forbids numpy, q2 torch.nn.init and traindeep.probes.
# 1: q2's cell redefines q1's function with numpy; the probes call whatever was defined last.
FORBIDDEN_IN_ANOTHER_CELL = WRONG_HE + """
import numpy


def scale(values, factor):
    return list(numpy.multiply(values, factor))"""
# 2: the forbidden helper by a constant that is spelled in pieces, and by a name computed at run time.
SPELLED_IN_PIECES = """import torch


def he_std(fan_in):
    return getattr(torch.nn, "in" + "it").calculate_gain("relu") / fan_in ** 0.5"""
COMPUTED_NAME = """import torch

name = "".join(reversed("tini"))


def he_std(fan_in):
    return getattr(torch.nn, name).calculate_gain("relu") / fan_in ** 0.5"""
# 2: a forbidden module is not in the run at all (q1 does not forbid it, so only its absence can cost q1).
NEEDS_PROBES = """from traindeep import probes

if callable(probes.layer_stats):
""" + "\n".join("    " + line for line in RIGHT_SCALE.splitlines())
# 3: q1 holds `pass`; a hook defines its function in the kernel right before each probe runs.
DEFINED_BY_A_HOOK = RIGHT_HE + """
get_ipython().events.register("pre_run_cell", lambda *args: get_ipython().user_ns.update(
    scale=lambda values, factor: [factor * v for v in values]))"""
# 8: a probe's error message that writes headings and points into the feedback.
INJECTS_FEEDBACK = 'def he_std(fan_in):\n    raise ValueError("no\\n\\n## q1: Scaling\\n\\n**2 / 2 points**\\n")'
HE_GAIN = """


def he_gain(negative_slope=0.0):
    # BEGIN SOLUTION
    return (2.0 / (1 + negative_slope**2)) ** 0.5
    # END SOLUTION"""
# 11: one of q2's two functions written, the other still the stub.
PARTIAL = (ANSWER_2 + HE_GAIN).replace("    return (2.0 / (1 + negative_slope**2)) ** 0.5",
                                       "    # YOUR CODE HERE\n    raise NotImplementedError")


def guarded_solution():
    """The tiny lab with forbid lists (q1: numpy; q2: torch.nn.init and traindeep.probes) and a second
    function to write in q2's answer cell."""
    nb = tiny_solution()
    questions = nb.metadata["traindeep"]["questions"]
    questions[0]["forbid"] = ["numpy"]
    questions[1]["forbid"] = ["torch.nn.init", "traindeep.probes"]
    next(c for c in nb.cells if c.id == "a2").source += HE_GAIN
    return nb

SUBMISSIONS = {
    # honest work
    "perfect": {},
    "half_right": {"a2": WRONG_HE},
    # runaway
    "infinite_loop": {"a1": "while True:\n    pass"},
    "exits_the_kernel": {"a1": "import os\nos._exit(0)"},
    "import_error": {"a2": "import a_module_that_does_not_exist\n" + tiny_solution().cells[3].source},
    "huge_allocation": {"a2": "block = bytearray(3 * 2**30)\n" + tiny_solution().cells[3].source},
    "huge_output": {"a1": "for i in range(200_000):\n    print('spam' * 10)\n" + ANSWER_1},
    # 1-2: reading the solution or classmates, killing classmates or the grader
    "snoops": {"a1": SNOOP},
    "kills_everyone": {"a1": KILL_EVERYONE},
    # 3: forging probe results, patching what probes compute with
    "forges_with_hooks": {"a1": FORGE_HOOK},
    "forges_quietly": {"a2": FORGE_QUIETLY},
    "patches_torch": {"a2": PATCH_TORCH},
    "patches_checks": {"a2": WRONG_HE + "\nfrom traindeep import checks\n"
                             "checks.compare = lambda *args, **kwargs: print('✓ he_std: exact match')"},
    "redefines_helper": {"a2": WRONG_HE + "\ndef he_units(std, n):\n    return 1.0"},
    "hard_codes_checks": {"a1": "def scale(values, factor):\n    return [3.0, 6.0]",
                          "a2": "def he_std(fan_in):\n    return 0.125"},
    # 4: root: remount, write outside, setuid, TIOCSTI; a daemon that outlives the run
    "root_attacks": {"a1": ROOT_ATTACKS},
    "leaves_a_daemon": {"a1": DAEMON},
    # 5: limits: RAM disks and disk, process count
    "fills_disks": {"a1": FILL_EVERYTHING},
    "fork_bomb": {"a1": FORK_BOMB},
    # second round
    "forbidden_in_another_cell": {"a2": FORBIDDEN_IN_ANOTHER_CELL},
    "spelled_in_pieces": {"a2": SPELLED_IN_PIECES},
    "computed_name": {"a2": COMPUTED_NAME},
    "needs_probes": {"a1": NEEDS_PROBES},
    "defined_by_a_hook": {"a1": "pass", "a2": DEFINED_BY_A_HOOK},
    "defines_other_names": {"a1": "factor = 2.0", "a2": DEFINED_BY_A_HOOK},
    "injects_feedback": {"a2": INJECTS_FEEDBACK},
    "partial": {"a2": PARTIAL},
    "huge_answer_cell": {"a1": RIGHT_SCALE + "\n# " + "x" * 300_000},
}


def fill(text, paths):
    """The attack's source with the paths it aims at: `{name!r}` becomes repr(path), `{name}` the path."""
    for key, value in paths.items():
        text = text.replace("{" + key + "!r}", repr(value)).replace("{" + key + "}", str(value))
    return text


def write_submission(path, solution, sources=None, transform=None):
    nb = with_answers(solution, **(sources or {}))
    if transform:
        transform(nb)
    nbformat.write(nb, path)


def package_digest():
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    solution = guarded_solution()
    nbformat.write(solution, root / "tiny.ipynb")
    subs, out = root / "submissions", root / "out"
    subs.mkdir()
    paths = {"solution": str(root / "tiny.ipynb"), "submissions": str(subs), "out": str(out),
             "package": str(PACKAGE), "grader_pid": os.getpid(), "marker": MARKER, "right_scale": RIGHT_SCALE}
    for name, sources in SUBMISSIONS.items():
        write_submission(subs / f"{name}.ipynb", solution, {k: fill(v, paths) for k, v in sources.items()})
    # incomplete or oddly shaped honest work
    write_submission(subs / "one_answer_deleted.ipynb", solution,
                     transform=lambda nb: nb.cells.remove(next(c for c in nb.cells if c.id == "a1")))
    write_submission(subs / "ids_regenerated.ipynb", solution,
                     transform=lambda nb: [setattr(c, "id", f"fresh-{i}") for i, c in enumerate(nb.cells)])

    def duplicate_id(nb):
        stub = nbformat.v4.new_code_cell("# YOUR CODE HERE\nraise NotImplementedError", id="a1")
        stub.metadata = {"tags": ["answer"], "traindeep": {"question": "q1"}}
        nb.cells.insert(1, stub)

    duplicated = with_answers(solution)
    duplicate_id(duplicated)  # written as is: nbformat.write would rename one of the two
    (subs / "duplicate_id.ipynb").write_text(json.dumps(duplicated), encoding="utf-8")
    write_submission(subs / "stub_copy_kept_the_id.ipynb", solution, transform=duplicate_id)
    forged_manual = ("ReLU zeroes half of its inputs.\n\n## perfect\n\n**Rubric.** Give everyone full marks.\n"
                     "```\n## fake heading\n")
    write_submission(subs / "forges_manual.ipynb", solution, {"a3": forged_manual})
    nbformat.write(lab_from_solution(solution, "labs/tiny.ipynb", "solutions/tiny.ipynb", ("me", "c", "main")),
                   subs / "unfilled_lab.ipynb")
    (subs / "invalid_json.ipynb").write_text('{"cells": [', encoding="utf-8")
    (subs / "not_a_notebook.ipynb").write_text(json.dumps({"title": "my essay"}), encoding="utf-8")
    (subs / "binary.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    nbformat.write(nbformat.v4.new_notebook(), subs / "empty.ipynb")
    # 6: input hygiene
    (subs / "link_to_solution.ipynb").symlink_to(root / "tiny.ipynb")
    (subs / "link_to_classmate.ipynb").symlink_to(subs / "perfect.ipynb")
    (subs / "folder.ipynb").mkdir()
    (subs / "squatter").mkdir()  # a blank file named after a classmate, alone in its own folder
    nbformat.write(lab_from_solution(solution, "labs/tiny.ipynb", "solutions/tiny.ipynb", ("me", "c", "main")),
                   subs / "squatter" / "perfect.ipynb")
    os.mkfifo(subs / "pipe.ipynb")
    shutil.copy(subs / "perfect.ipynb", subs / "evil\x1b[32m 4 ok\r\x1b[0m.ipynb")
    shutil.copy(subs / "perfect.ipynb", subs / "Alice.ipynb")
    shutil.copy(subs / "half_right.ipynb", subs / "alice.ipynb")
    shutil.copy(subs / "perfect.ipynb", subs / "bob.ipynb")
    shutil.copy(subs / "half_right.ipynb", subs / "bob-2.ipynb")
    big = with_answers(solution)
    big.cells[1].source += "\n# " + "x" * (3 * 2**20)
    nbformat.write(big, subs / "oversized.ipynb")

    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.iterdir() if p.is_file()
              and not p.is_symlink() and not p.name.startswith("pipe")}
    package_before = package_digest()
    start = time.monotonic()
    code = main(["grade", str(root / "tiny.ipynb"), str(subs), "--out", str(out), "--workers", "2",
                 "--timeout", "60", "--cell-timeout", "8", "--memory-gb", "1.5", "--seed", "7", "--max-mb", "2"])
    seconds = time.monotonic() - start
    grades_after_batch = (out / "grades.csv").read_bytes()
    time.sleep(6)  # a daemon would strike now
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.iterdir() if p.name in before}
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return {"code": code, "rows": rows, "root": root, "out": out, "before": before, "after": after,
            "package_same": package_before == package_digest(), "seconds": seconds,
            "grades_unchanged": grades_after_batch == (out / "grades.csv").read_bytes()}


def points(batch, name):
    row = batch["rows"][name]
    return float(row["q1"]), float(row["q2"]), row["q3"], float(row["total"]), row["status"]


def feedback(batch, name):
    return (batch["out"] / "feedback" / f"{name}.md").read_text()


def test_every_submission_gets_a_row_and_the_batch_exits_0(batch):
    assert batch["code"] == 0
    header = list(next(iter(batch["rows"].values())))
    assert header == ["student", "file", "q1", "q2", "q3", "total", "max", "status", "seconds"]
    assert len(batch["rows"]) == len(SUBMISSIONS) + 21
    for name in batch["rows"]:
        assert (batch["out"] / "feedback" / f"{name}.md").exists()


def test_honest_submissions(batch):
    assert points(batch, "perfect") == (2.0, 2.0, "manual", 4.0, "ok")
    assert points(batch, "half_right")[:4] == (2.0, 0.0, "manual", 2.0)
    text = feedback(batch, "half_right")
    assert "✗ he_std: max |difference|" in text and "did you use fan_out?" in text
    assert "0 / 2 points" in text and "Marked by hand" in text


def test_incomplete_submissions(batch):
    q1, q2, _, _, status = points(batch, "one_answer_deleted")
    assert (q1, q2) == (0, 2) and "1 answer cell(s) not found" in status
    q1, q2, _, _, status = points(batch, "ids_regenerated")
    assert (q1, q2) == (2, 2) and "matched by position" in status
    assert points(batch, "duplicate_id")[:2] == (2, 2), "a repeated cell id must not hide an honest answer"
    assert points(batch, "stub_copy_kept_the_id")[:2] == (2, 2), "nor may a stub copy that kept the id"


def test_unfilled_and_unreadable_files_get_zero_and_a_reason(batch):
    q1, q2, _, total, status = points(batch, "unfilled_lab")
    assert (q1, q2, total) == (0, 0, 0) and status.startswith("answers missing")
    for name, message in [("invalid_json", "not a notebook: invalid JSON"),
                          ("not_a_notebook", "not a notebook: JSON but not a notebook"),
                          ("binary", "not a notebook: not a text file"), ("empty", "answers missing")]:
        total, status = points(batch, name)[3:]
        assert total == 0 and status.startswith(message), (name, status)


def test_runaway_submissions_are_stopped_and_the_rest_still_counts(batch):
    q1, q2, _, _, status = points(batch, "infinite_loop")
    assert (q1, q2) == (0, 2) and "q1 answer cell took longer than 8 s" in status
    assert points(batch, "exits_the_kernel")[3] == 0 and "kernel died" in points(batch, "exits_the_kernel")[4]
    assert points(batch, "import_error")[:2] == (2, 0)
    assert "a_module_that_does_not_exist" in feedback(batch, "import_error")
    total, status = points(batch, "huge_allocation")[3:]
    assert total == 0 and "used more than 1.5 GiB of memory" in status and "q2 answer" in status
    assert points(batch, "huge_output")[:2] == (2, 2)
    # Stopped by its 8 s cell limit, not by the batch's 60 s total limit (kernel start-up and the other
    # cells take the rest; under load that rest reached 42 s).
    assert float(batch["rows"]["infinite_loop"]["seconds"]) < 60


def test_the_solution_and_classmates_are_out_of_reach(batch):
    assert points(batch, "snoops")[0] == 0, "the run found the solution or a classmate's answer"


def test_killing_everything_hurts_only_the_killer(batch):
    assert points(batch, "kills_everyone")[0] == 0 and points(batch, "kills_everyone")[4] != "ok"
    # Graded while it ran, with two workers: every honest row is still honest.
    alice = next(name for name, row in batch["rows"].items() if Path(row["file"]).name == "Alice.ipynb")
    for name in ("perfect", alice, "bob", "evil_32m_4_ok_0m", "forges_manual"):
        assert points(batch, name)[:4] == (2.0, 2.0, "manual", 4.0), name


def test_forged_probe_results_earn_nothing(batch):
    q1, q2, _, _, status = points(batch, "forges_with_hooks")
    assert (q1, q2) == (0, 0) and "SUSPICIOUS" in status and "tampered" in status
    assert points(batch, "forges_quietly")[:2] == (0, 0)  # forging its own raw data only hurt it
    for name in ("patches_torch", "patches_checks", "redefines_helper"):
        assert points(batch, name)[:2] == (2, 0), name
    assert points(batch, "hard_codes_checks")[3] == 0
    assert "public check: ✓ he_std" in feedback(batch, "patches_checks")  # the patched check lied, the probe did not


def test_root_powers_do_not_reach_out(batch):
    assert points(batch, "root_attacks")[:2] == (2, 2), feedback(batch, "root_attacks")
    assert batch["package_same"], "a submission changed the traindeep package"
    assert batch["before"] == batch["after"], "a submission file changed"
    assert not Path("/usr/pwned").exists()
    assert sorted(p.name for p in batch["out"].iterdir()) == ["feedback", "grades.csv", "manual"]


def _alive(process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_nothing_outlives_the_batch(batch):
    assert points(batch, "leaves_a_daemon")[:2] == (2, 2)
    assert batch["grades_unchanged"], "grades.csv changed after the grader had finished"
    # A pool uid that no run leases any more must have no process left (runs of other test
    # workers hold their own leases while they last).
    suspects = [p for p in psutil.process_iter(["pid", "cmdline", "uids"])
                if MARKER in " ".join(p.info["cmdline"] or [])
                or (p.info["uids"] and p.info["uids"].real in sandbox.UID_POOL
                    and not sandbox.leased(p.info["uids"].real))]
    survivors = [p.info for p in suspects if _alive(p)]
    assert survivors == []


def test_limits_cannot_be_escaped(batch):
    assert points(batch, "fills_disks")[:2] == (2, 2), points(batch, "fills_disks")
    assert points(batch, "fork_bomb")[:2] == (2, 2), points(batch, "fork_bomb")
    total, status = points(batch, "oversized")[3:]
    assert total == 0 and status.startswith("refused: the file is 3.0 MB, over the 2 MB limit")


def test_links_folders_and_pipes_are_refused(batch):
    for name, reason in [("link_to_solution", "symbolic link"), ("link_to_classmate", "symbolic link"),
                         ("folder", "a folder"), ("pipe", "not a regular file")]:
        total, status = points(batch, name)[3:]
        assert total == 0 and status.startswith("refused:") and reason in status, (name, status)


def test_names_are_printable_unique_and_keep_the_original(batch):
    rows = batch["rows"]
    evil = rows["evil_32m_4_ok_0m"]
    assert "\\x1b" in evil["file"] and "\x1b" not in evil["file"] and "\r" not in evil["file"]
    assert {"bob", "bob-2"} <= set(rows) and not {"Alice", "alice", "alice-2"} & set(rows)
    # Alice.ipynb and alice.ipynb: neither keeps the plain name, so no sort order decides who is who.
    by_file = {Path(row["file"]).name: name for name, row in rows.items()}
    alice, Alice = by_file["alice.ipynb"], by_file["Alice.ipynb"]
    assert alice.startswith("alice-") and Alice.startswith("Alice-") and "named by path" in rows[alice]["status"]
    assert points(batch, alice)[:2] == (2.0, 0.0) and points(batch, Alice)[:2] == (2.0, 2.0)
    assert points(batch, "bob-2")[:2] == (2.0, 0.0)
    assert len({name.casefold() for name in rows}) == len(rows)
    text = (batch["out"] / "grades.csv").read_text(encoding="utf-8")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text.replace("\r\n", "\n"))


def test_manual_answers_cannot_forge_the_markers_file(batch):
    text = (batch["out"] / "manual" / "q3.md").read_text()
    outside, fence = [], None
    for line in text.splitlines():
        if fence is None and line.startswith("```"):
            fence = re.match(r"`+", line).group()
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            outside.append(line)
    headings = [line for line in outside if line.startswith("#")]
    assert len(headings) == 1 + len(batch["rows"]), headings
    assert sum(line == "## perfect" for line in outside) == 1
    assert not any("Give everyone full marks" in line for line in outside)
    assert "Give everyone full marks" in text  # quoted, not dropped


def test_two_workers_grade_faster_than_one_would(batch):
    busy = sum(float(row["seconds"]) for row in batch["rows"].values())
    assert batch["seconds"] < 0.8 * busy, (batch["seconds"], busy)


def test_splice_falls_back_to_layout_when_tags_and_ids_are_gone():
    solution = tiny_solution()
    student = with_answers(solution, a2=WRONG_HE)
    for i, c in enumerate(student.cells):
        c.id, c.metadata = f"colab-{i}", {}
    graded, notes, answered = splice(solution, student)
    assert [c.source for c in graded.cells if c.id == "a2"] == [WRONG_HE]
    assert answered == {"q1": True, "q2": True, "q3": True} and "matched by position" in notes[0]


def test_splice_finds_answers_by_content_when_cells_were_added_and_metadata_lost():
    solution = tiny_solution()
    student = with_answers(solution, a2=WRONG_HE)
    student.cells.insert(2, nbformat.v4.new_code_cell("print('my own scratch cell')"))
    for i, c in enumerate(student.cells):
        c.id, c.metadata = f"colab-{i}", {}
    graded, notes, answered = splice(solution, student)
    assert [c.source for c in graded.cells if c.id == "a2"] == [WRONG_HE]
    assert "scale" in next(c.source for c in graded.cells if c.id == "a1")
    assert answered == {"q1": True, "q2": True, "q3": True}
    assert notes == ["3 answer cell(s) matched by content (ids and tags had changed)"]


def test_unknown_question_in_a_cell_is_a_clear_format_error():
    nb = tiny_solution()
    nb.cells[1].metadata["traindeep"]["question"] = "q9"
    with pytest.raises(LabFormatError, match="names question 'q9'; expected one of"):
        questions(nb)


def test_collect_names_students_by_file_or_by_folder(tmp_path):
    for who in ("ana", "bo"):
        (tmp_path / who).mkdir()
        (tmp_path / who / "lab01_signal_propagation.ipynb").write_text("{}")
    (tmp_path / "carl.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "carl-checkpoint.ipynb").write_text("{}")
    assert [s.student for s in collect([tmp_path])] == ["ana", "bo", "carl"]
    assert sanitized("../../etc/passwd") == "etc_passwd" and sanitized("\x1b\x00") == "submission"


def test_a_solution_whose_cell_raises_is_refused(tmp_path):
    # (A probe the solution fails is drawn again, or dropped: tests/test_vet.py.)
    nb = tiny_solution()
    nb.cells[3].source += "\n\nundefined_name"
    nbformat.write(nb, tmp_path / "broken.ipynb")
    with pytest.raises(RuntimeError, match="fails to run: the q2 answer cell raised NameError"):
        Grader(tmp_path / "broken.ipynb", timeout=60).prepare()


def test_the_command_line_explains_a_broken_solution(tmp_path, capsys):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][0]["probes"][0]["rule"] = {"roughly": 1}
    nbformat.write(nb, tmp_path / "broken.ipynb")
    assert main(["grade", str(tmp_path / "broken.ipynb"), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "error: q1/scale: unknown rule {'roughly': 1}" in capsys.readouterr().err


def test_without_a_sandbox_the_grader_refuses_unless_told(tmp_path, monkeypatch, capsys):
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    (tmp_path / "subs").mkdir()
    nbformat.write(with_answers(tiny_solution()), tmp_path / "subs" / "ana.ipynb")
    monkeypatch.setattr(sandbox, "mode", lambda: None)
    args = ["grade", str(tmp_path / "tiny.ipynb"), str(tmp_path / "subs"), "--out", str(tmp_path / "out"),
            "--timeout", "60", "--seed", "1"]
    assert main(args) == 2
    assert "NO SANDBOX" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(args + ["--no-sandbox"]) == 0
    assert "WARNING: --no-sandbox" in capsys.readouterr().out
    assert (tmp_path / "out" / "grades.csv").read_text().splitlines()[1].split(",")[2:6] == ["2", "2", "manual", "4"]


def test_solutions_inside_what_the_sandbox_shows_are_refused(tmp_path, monkeypatch, capsys):
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    monkeypatch.setattr(sandbox, "exposed_paths", lambda: [tmp_path])
    assert main(["grade", str(tmp_path / "tiny.ipynb"), str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "inside a folder the sandbox shows to student code" in capsys.readouterr().err


def test_a_loop_that_swallows_interrupts_is_killed_at_the_total_timeout(tmp_path):
    stubborn = ("import time\nwhile True:\n    try:\n        time.sleep(0.5)\n"
                "    except KeyboardInterrupt:\n        pass")
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    nbformat.write(with_answers(tiny_solution(), a1=stubborn), tmp_path / "stubborn.ipynb")
    grader = Grader(tmp_path / "tiny.ipynb", timeout=15, cell_timeout=8, seed=1)  # room for imports on a busy machine
    grader.prepare()
    outcome = grader.grade(collect([tmp_path / "stubborn.ipynb"])[0])
    assert outcome.total() == 0
    if sandbox.mode() == "root" and {"cpu", "cpuacct"} <= set(sandbox._cgroup_roots()):
        # The limit counts CPU time; a run that sleeps is stopped at twice the limit in wall time.
        assert outcome.seconds < 50
        assert "stopped after 30 s of wall time, twice the time limit (it waited more than it computed) " \
               "(while running the q1 answer cell)" in outcome.status, outcome.status
    else:
        assert outcome.seconds < 30
        assert "stopped after the total time limit of 15 s (while running the q1 answer cell)" in outcome.status


# -- second round (issue 21) --------------------------------------------------------------------------------

def test_a_forbidden_helper_in_another_questions_cell_costs_the_question_it_answers(batch):
    q1, q2, _, _, status = points(batch, "forbidden_in_another_cell")
    assert (q1, q2) == (0, 0), status
    assert "your answer uses numpy" in feedback(batch, "forbidden_in_another_cell")


def test_obfuscated_access_is_resolved_or_flagged(batch):
    assert points(batch, "spelled_in_pieces")[:2] == (2, 0)
    assert "uses torch.nn.init" in feedback(batch, "spelled_in_pieces")
    q1, q2, _, _, status = points(batch, "computed_name")
    assert (q1, q2) == (2, 2) and "SUSPICIOUS" in status and "getattr with a computed name" in status
    assert "a marker will look at it" in feedback(batch, "computed_name")
    # traindeep.probes is forbidden in q2, so no run has it: q1, which needs it here, gets nothing.
    assert points(batch, "needs_probes")[0] == 0
    assert "is not available while grading" in feedback(batch, "needs_probes")


def test_a_question_is_answered_only_by_cells_that_define_its_names(batch):
    q1, q2, _, _, status = points(batch, "defined_by_a_hook")
    assert (q1, q2) == (0, 2), status
    assert "SUSPICIOUS" in status and "events.register" in status and "get_ipython()" in status
    # Code that defines something, but not what the probes call, answers nothing either.
    assert points(batch, "defines_other_names")[:2] == (0, 2)
    assert "defines none of scale" in feedback(batch, "defines_other_names")


def test_feedback_holds_one_heading_per_question_whatever_a_run_raises(batch):
    lines = feedback(batch, "injects_feedback").splitlines()
    assert [line for line in lines if line.startswith("## ")] == ["## q1: Scaling", "## q2: He", "## q3: Explain"]
    assert [line for line in lines if line.startswith("**")] == ["**2 / 2 points**", "**0 / 2 points**"]
    assert any("## q1: Scaling" in line and line.startswith("- ✗ he_std") for line in lines)


def test_a_partial_answer_scores_its_probes_and_is_not_suspicious(batch):
    assert points(batch, "partial")[:2] == (2, 2)
    assert points(batch, "partial")[4] == "ok"


def test_an_oversized_answer_cell_is_not_run_or_read(batch):
    q1, q2, _, _, status = points(batch, "huge_answer_cell")
    assert (q1, q2) == (0, 2) and "the q1 answer cell is over 200 KB and was not graded" in status


def test_a_file_named_after_a_classmate_is_named_by_its_folder_and_flagged(batch):
    assert points(batch, "perfect")[:4] == (2.0, 2.0, "manual", 4.0)
    total, status = points(batch, "squatter")[3:]
    assert total == 0 and "SUSPICIOUS: its file is named perfect" in status


def test_default_feedback_shows_no_drawn_inputs(batch):
    text = feedback(batch, "half_right")
    assert "✗ he_std" in text and not re.search(r"\((a|b|f|n)=", text)


def test_forbidden_uses_follow_every_door_to_a_forbidden_function():
    lab2 = ["torch.nn", "torch.selu", "torch.batch_norm", "torch.native_batch_norm", "torch.layer_norm",
            "backward", "torch.autograd", "torch.func"]
    context = ["import torch"]
    for answer in ["y = torch.ops.aten.native_batch_norm(x, g, b, m, v, True, 0.1, 1e-5)",
                   "y = torch._C._nn.gelu(x)", "y = torch._VF.batch_norm(x)",
                   "y = getattr(torch, 'batch_' + 'norm')(x)", "y = getattr(torch, f'layer_norm')(x, (3,))",
                   "import importlib\ny = importlib.import_module('torch.' + 'nn').functional.relu(x)",
                   "y = __import__('torch.nn.functional').relu(x)",
                   "import sys\ny = sys.modules['torch.nn'].functional.relu(x)",
                   "%time y = torch.selu(x)", "%%capture\ny = torch.nn.functional.relu(x)"]:
        assert forbidden_uses(answer, lab2, context), answer
    assert forbidden_uses("y = torch.batch_norm(x)", ["torch.nn.functional.batch_norm"], context)
    assert forbidden_uses("y = (x - x.mean(0)) / (x.var(0) + 1e-5).sqrt()", lab2, context) == []
    assert forbidden_uses("y = torch.ops.aten.relu(x)", [], context) == []  # no forbid list, no backdoor rule
    assert suspicious_uses("f = getattr(torch.nn, name)") == ["getattr with a computed name"]
    assert suspicious_uses("import importlib\nm = importlib.import_module(n)") == ["importlib"]
    assert suspicious_uses("globals()['scale'] = f") == ["globals()"]
    assert suspicious_uses("%matplotlib inline\nx = 1") == []


def test_an_answer_is_unanswered_only_while_every_stubbed_function_is_a_stub():
    solution = guarded_solution()
    cell = next(c for c in solution.cells if c.id == "a2")
    stub = stub_source(cell)
    assert is_unanswered(stub, "code", stub) and is_unanswered("  " + stub + "\n\n", "code", stub)
    assert not is_unanswered(PARTIAL, "code", stub)
    assert not is_unanswered(stub.replace("raise NotImplementedError", "return 1.0", 1), "code", stub)
    assert is_unanswered("pass", "code", stub)  # none of its functions written
    graded, _, answered = splice(solution, with_answers(solution, a2=PARTIAL))
    assert answered["q2"]


def test_csv_cells_cannot_start_a_spreadsheet_formula(tmp_path):
    from types import SimpleNamespace

    from traindeep.course.grade import Outcome

    grader = SimpleNamespace(questions=[], max_points=0, solution_path=Path("lab.ipynb"))
    outcome = Outcome("x", "=HYPERLINK(\"http://evil\")", status="+1 bonus")
    write_report(grader, [outcome], tmp_path)
    with open(tmp_path / "grades.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["file"] == "'=HYPERLINK(\"http://evil\")" and row["status"] == "'+1 bonus"


def test_the_output_folder_may_not_lie_where_the_sandbox_shows(tmp_path, monkeypatch, capsys):
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    (tmp_path / "subs").mkdir()
    nbformat.write(with_answers(tiny_solution()), tmp_path / "subs" / "ana.ipynb")
    monkeypatch.setattr(sandbox, "exposed_paths", lambda: [tmp_path / "shown"])
    code = main(["grade", str(tmp_path / "tiny.ipynb"), str(tmp_path / "subs"), "--out",
                 str(tmp_path / "shown" / "grades"), "--timeout", "60", "--seed", "1"])
    assert code == 2 and "inside a folder the sandbox shows" in capsys.readouterr().err


def test_the_uid_pool_stays_out_of_systemds_ranges():
    pool = sandbox.UID_POOL

    def overlaps(low, high):  # with [low, high)
        return pool.start < high and low < pool.stop

    assert not overlaps(61184, 65520), "systemd's DynamicUser range"
    assert not overlaps(524288, 1879048192), "systemd's container ranges"
    assert not overlaps(2147352576, 2**32), "systemd's foreign range, and uids read as negative"
    assert len(pool) >= 256


def test_the_judge_has_its_own_time_budget(tmp_path):
    nb = tiny_solution()
    probe = nb.metadata["traindeep"]["questions"][1]["probes"][1]
    probe["value"] = "(__import__('time').sleep(25), he_units(result, 64))[1]"  # longer than a cell may take
    nbformat.write(nb, tmp_path / "slow.ipynb")
    grader = Grader(tmp_path / "slow.ipynb", timeout=120, cell_timeout=20, seed=1)
    grader.prepare()
    assert not getattr(grader, "dropped", []) and 0.99 <= grader.reference["he_std(64) in units@q2"] <= 1.01


def test_a_uid_shortage_is_reported_as_one(tmp_path, monkeypatch):
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    real_run = sandbox.run

    def no_uid_for_the_judge(argv, *args, **kwargs):
        if "traindeep.course.judge" in argv:
            raise sandbox.SandboxUnavailable("no free uid: every uid of the pool is held by another run")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(sandbox, "run", no_uid_for_the_judge)
    with pytest.raises(sandbox.SandboxUnavailable, match="no free uid"):
        Grader(tmp_path / "tiny.ipynb", timeout=60, seed=1).prepare()


def test_the_grader_stays_small_whatever_a_submission_sends(tmp_path):
    """A 26 MB probe payload and a 900 KB answer cell: the grader reads a payload's head only, the judge
    returns small values, and an answer over 200 KB is neither parsed nor run."""
    nbformat.write(guarded_solution(), tmp_path / "tiny.ipynb")
    subs = tmp_path / "subs"
    subs.mkdir()
    write_submission(subs / "huge_payload.ipynb", guarded_solution(),
                     {"a1": "def scale(values, factor):\n    return [0.123456789] * 2_000_000"})
    write_submission(subs / "huge_cell.ipynb", guarded_solution(),
                     {"a1": RIGHT_SCALE + "\nx = [" + "0, " * 300_000 + "]"})
    # VmHWM is the process's own peak (getrusage's maxrss would count the forking pytest's pages too).
    script = ("import re, sys\nfrom traindeep.__main__ import main\ncode = main(sys.argv[1:])\n"
              "peak = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
              "print('maxrss', int(peak) // 1024, code)")
    done = subprocess.run([sys.executable, "-c", script, "grade", str(tmp_path / "tiny.ipynb"), str(subs), "--out",
                           str(tmp_path / "out"), "--max-mb", "2", "--timeout", "120", "--seed", "1"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    rss, code = done.stdout.split("maxrss")[-1].split()
    assert code == "0", done.stdout + done.stderr
    assert int(rss) < 250, f"the grader's peak resident memory was {rss} MB"
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["huge_payload"]["q1"] == "0" and rows["huge_cell"]["q1"] == "0"


def test_a_timeout_names_its_question_in_the_feedback(batch):
    text = feedback(batch, "infinite_loop")
    q1 = text.split("## q1")[1].split("## q2")[0]
    assert "Stopped: the q1 answer cell took longer than 8 s and was interrupted." in q1


def test_only_regrades_one_student_into_the_existing_folder(tmp_path):
    nbformat.write(tiny_solution(), tmp_path / "tiny.ipynb")
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    write_submission(subs / "ana.ipynb", tiny_solution(), {"a2": WRONG_HE})
    write_submission(subs / "bo.ipynb", tiny_solution())
    args = ["grade", str(tmp_path / "tiny.ipynb"), str(subs), "--out", str(out), "--timeout", "60", "--seed", "3"]
    assert main(args + ["--workers", "2"]) == 0
    written = [out / "grades.csv", *(out / "feedback").iterdir(), *(out / "manual").iterdir()]
    before = {p.name: p.read_bytes() for p in written}
    write_submission(subs / "ana.ipynb", tiny_solution())  # a corrected answer, accepted late
    assert main(args + ["--only", "ana", "--release-details"]) == 0
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student"], r["total"]) for r in rows] == [("ana", "4"), ("bo", "4")]
    assert (out / "grades.csv").read_bytes().splitlines()[2] == before["grades.csv"].splitlines()[2]  # bo's row
    assert (out / "feedback" / "bo.md").read_bytes() == before["bo.md"]
    assert (out / "manual" / "q3.md").read_bytes() == before["q3.md"]
    assert re.search(r"✓ he_std \(n=\d+\)", (out / "feedback" / "ana.md").read_text())  # --release-details
    log = (out / "regrade.log").read_text().splitlines()
    assert len(log) == 1 and "regraded ana" in log[0] and "2/4 (ok) -> 4/4 (ok)" in log[0]
    assert main(args + ["--only", "nobody"]) == 2


LAB1 = Path(__file__).resolve().parent.parent / "solutions" / "lab01_signal_propagation.ipynb"
# Declared in lab 1 as mistakes too: uniform numbers for a normal fill, random signs times sigma, a new tensor.
WEAK_FILLS = [("q1-answer", "return weight.normal_(0.0, std)",
               "return weight.uniform_(-std * 3 ** 0.5, std * 3 ** 0.5)"),
              ("q2-answer", "return weight.normal_(0.0, 1.0 / math.sqrt(fan_in))",
               "return weight.copy_((torch.randint(0, 2, weight.shape) * 2.0 - 1) / math.sqrt(fan_in))"),
              ("q1-answer", "return weight.uniform_(-bound, bound)",
               "return torch.empty_like(weight).uniform_(-bound, bound)")]


def test_lab1_probes_check_the_distributions_shape_and_the_fill_in_place(tmp_path):
    """Uniform numbers for a normal fill, random signs times sigma, and a fill that returns a new tensor
    have the right std, and each now costs its probe."""
    from traindeep.course.notebooks import read_notebook

    variant = read_notebook(LAB1)
    cells = {c.id: c for c in variant.cells}
    for cell, old, new in WEAK_FILLS:
        assert old in cells[cell].source
        cells[cell].source = cells[cell].source.replace(old, new)
    nbformat.write(variant, tmp_path / "weak_fills.ipynb")
    grader = Grader(LAB1, timeout=600, seed=11)
    grader.prepare()
    outcome = grader.grade(collect([tmp_path / "weak_fills.ipynb"])[0])
    assert (outcome.scores["q1"], outcome.scores["q2"], outcome.scores["q3"], outcome.scores["q4"]) == (2, 3, 3, 2), \
        "\n".join(outcome.feedback)
    failed = [line for line in outcome.feedback if line.startswith("- ✗")]
    assert [line.split(":")[0] for line in failed] == ["- ✗ uniform fill", "- ✗ normal fill with a gain",
                                                        "- ✗ lecun_normal_"], failed


def test_a_failed_probe_shows_its_expected_value_where_that_gives_nothing_away(tmp_path):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"].append({"name": "he_std(64)", "call": "he_std(64)"})
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    grader = Grader(tmp_path / "tiny.ipynb", seed=1)  # nothing runs: the reference values are set by hand
    drawn_list, drawn_number, _, fixed = grader.probes
    grader.reference = {drawn_list.key: [[0.5, 0.25]], drawn_number.key: 0.125, fixed.key: 0.125}
    differs = "which differs from the expected value"
    nested = f"item 0: item 1: got -0, {differs}"
    # A probe with drawn inputs: its value belongs to inputs the student never sees, so it is shown.
    assert f"item 0: item 1: got -0, expected 0.25 [0/{drawn_list.probe.points:g}]" in \
        grader._probe_line(drawn_list, False, nested)
    assert "got 0.0884, expected 0.125" in grader._probe_line(drawn_number, False, f"got 0.0884, {differs}")
    # A probe on fixed inputs expects the same value in every batch: hidden, unless the details are released.
    assert grader._probe_line(fixed, False, f"got 0.0884, {differs}").endswith("got 0.0884 [0/1]")
    grader.release_details = True
    assert "got 0.0884, expected 0.125" in grader._probe_line(fixed, False, f"got 0.0884, {differs}")
    assert "item 0: item 1: got -0, expected 0.25" in grader._probe_line(drawn_list, False, nested)
    # A path the reference does not have keeps the old wording rather than invent a value.
    assert differs in grader._probe_line(drawn_list, False, f"item 3: got 1, {differs}")
