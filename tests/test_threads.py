"""No parallel context oversubscribes the cores: each of W workers gets at most cores // W threads."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from traindeep.course import sandbox

ROOT = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1


def parallel_commands():
    """The commands `make test` runs with several workers (`-n N`), from make's dry run."""
    lines = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = re.sub(r"\\\n\s*", " ", lines)  # a command continued over several lines is one command
    return [line for line in lines.splitlines() if re.search(r"pytest .*-n \d+", line)]


def test_every_parallel_command_of_make_test_pins_one_thread():
    commands = parallel_commands()
    assert len(commands) >= 2, commands  # the unit tests and nbval
    for command in commands:
        workers = int(re.search(r"-n (\d+)", command).group(1))
        threads = int(re.search(r"OMP_NUM_THREADS=(\d+)", command).group(1)) if "OMP_NUM_THREADS=" in command else 0
        assert 1 <= threads <= max(1, CORES // workers), command


@pytest.mark.skipif(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2, reason="not under xdist")
def test_this_test_worker_runs_within_its_share():
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    assert torch.get_num_threads() <= max(1, CORES // workers)


def test_nbval_kernels_inherit_the_limit(tmp_path):
    """The kernels nbval starts under the Makefile's environment see one thread each."""
    for name in ("a", "b"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(
            "import os, torch\n"
            f"assert torch.get_num_threads() <= max(1, {CORES} // 2), torch.get_num_threads()")]
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    command = next(c for c in parallel_commands() if "--nbval" in c)
    env = dict(os.environ)
    env.update(pair.split("=", 1) for pair in shlex.split(command) if re.fullmatch(r"[A-Z_]+=\d+", pair))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "-n", "2",
                           "--dist", "loadfile", str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.skipif(sandbox.mode() is None, reason="bwrap cannot create namespaces here")
def test_graded_kernels_run_one_thread():
    done = sandbox.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], b"",
                       sandbox.Limits(timeout=60))
    assert done.returncode == 0 and done.stdout.strip() == b"1", (done.stdout, done.stderr[-500:])
