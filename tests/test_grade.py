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
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from tinylab import ANSWER_1, tiny_solution, with_answers

from traindeep.__main__ import main
from traindeep.course import sandbox
from traindeep.course.grade import Grader, splice
from traindeep.course.intake import collect, sanitized
from traindeep.course.labformat import LabFormatError, questions
from traindeep.course.labs import lab_from_solution

PACKAGE = Path(sandbox.PACKAGE)
pytestmark = pytest.mark.filterwarnings("ignore::nbformat.warnings.DuplicateCellId")
WRONG_HE = "def he_std(fan_in):\n    return (1.0 / fan_in) ** 0.5"
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
    solution = tiny_solution()
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
    assert len(batch["rows"]) == len(SUBMISSIONS) + 20
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
    assert float(batch["rows"]["infinite_loop"]["seconds"]) < 40


def test_the_solution_and_classmates_are_out_of_reach(batch):
    assert points(batch, "snoops")[0] == 0, "the run found the solution or a classmate's answer"


def test_killing_everything_hurts_only_the_killer(batch):
    assert points(batch, "kills_everyone")[0] == 0 and points(batch, "kills_everyone")[4] != "ok"
    # Graded while it ran, with two workers: every honest row is still honest.
    for name in ("perfect", "Alice", "bob", "evil_32m_4_ok_0m", "forges_manual"):
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
    assert {"Alice", "alice-2", "bob", "bob-2"} <= set(rows)
    assert points(batch, "alice-2")[:2] == (2.0, 0.0) and points(batch, "bob-2")[:2] == (2.0, 0.0)
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


def test_a_solution_that_fails_its_own_probe_is_refused(tmp_path):
    nb = tiny_solution()
    nb.metadata["traindeep"]["questions"][1]["probes"][1]["rule"] = {"between": [0.5, 0.6]}
    nbformat.write(nb, tmp_path / "broken.ipynb")
    with pytest.raises(RuntimeError, match="fails its own probes: q2/he_std"):
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
    assert outcome.total() == 0 and outcome.seconds < 30
    assert "stopped after the total time limit of 15 s (while running the q1 answer cell)" in outcome.status
