import time

import pytest
import torch

from traindeep import data, nets
from traindeep.course import bench


def test_bare_loop_is_a_real_training_loop():
    splits = data.digits()
    torch.manual_seed(0)
    model = nets.mlp(splits.num_features, 10, depth=2, width=64)
    accuracy = bench.bare_loop(model, splits.X_train, splits.y_train, 3, 0.05, 64, 0, splits.X_val, splits.y_val)
    assert accuracy > 0.8


def test_explorer_latency_and_fit_overhead_are_measured():
    median, p95 = bench.explorer_latency(samples=5)
    assert 0 < median <= p95
    fit_ms, bare_ms, ratio = bench.fit_overhead(repeats=1, epochs=1)
    assert fit_ms > 0 and bare_ms > 0 and ratio == fit_ms / bare_ms


def test_the_lr_explorer_latency_is_measured_over_its_grid():
    from traindeep.widgets import lr

    grid = lr.network_runs(rates=(0.01, 0.1), betas=(0.9,), schedules=("constant",), optimizers=("sgd", "adam"))
    median, p95 = bench.lr_explorer_latency(samples=6, grid=grid)
    assert 0 < median <= p95 < 5000


def test_report_is_written(tmp_path, monkeypatch):
    # The measurements are tested one by one (above, and the sweeps in test_batched.py); here the
    # slow ones stand in with fixed values so that the report's layout is what is checked.
    monkeypatch.setattr(bench, "fit_overhead", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setattr(bench, "lr_explorer_latency", lambda: (42.0, 60.0))
    monkeypatch.setattr(bench, "batched_speedup", lambda batch_size: (6.0, 1.0, 6.0))
    monkeypatch.setattr(bench, "coursework_sweeps", lambda: (30.0, 10.0, 3.0))
    monkeypatch.setattr(bench, "signal_grid_seconds", lambda: (7.5, 4.0, 1.25))
    builds = {(1, 0): 300.0, (2, 0): 240.0, (1, 2): 420.0, (2, 2): 960.0}
    monkeypatch.setattr(bench, "book_build_seconds",
                        lambda threads, busy, limit, notebooks: (builds[threads, busy], 0, 0.4))
    report = bench.run_bench(tmp_path / "bench.md", notebooks=False, grading=False, build=True)
    assert (tmp_path / "bench.md").read_text() == report
    assert "| the same, stacked by `signal_profiles` on 128 inputs | 1.25 s | |" in report
    assert "| as filed / stacked | 6.0 | ≥ 5 |" in report
    assert "| network by network / stacked, on the same inputs | 3.2 | |" in report
    assert ("| `make book` from a fresh clone, THREADS=1, beside two busy processes (load 0.4 at start), exit 0 "
            "| 7.0 min | |") in report
    assert "| THREADS=1: busy / quiet build time | 1.40 | ≤ 2 |" in report
    assert "| THREADS=2: busy / quiet build time | 4.00 | ≤ 2 |" in report
    assert "| quiet: THREADS=1 / THREADS=2 build time | 1.25 | |" in report
    assert "make book" not in bench.run_bench(tmp_path / "again.md", notebooks=False, grading=False)  # opt-in
    assert "| `fit` / bare loop | 1.000 | ≤ 1.10 |" in report and "signal explorer callback, median" in report
    assert "| learning-rate explorer callback, median | 42 ms | ≤ 100 ms |" in report
    assert "| one by one / stacked, batch 64 | 6.0 | ≥ 5 |" in report and "| alone / batched | 3.0 | ≥ 3 |" in report


def test_a_busy_build_past_its_limit_is_stopped_and_reported_as_a_bound():
    asked = {}

    def measure(threads, busy, limit, notebooks):
        asked[threads, busy] = limit
        notebooks["book/a.ipynb"] = 10.0 * threads + busy
        if (threads, busy) == (2, 2):
            return 2.5 * 240.0, None, 3.9  # stopped at the limit, before book/b.ipynb ran
        notebooks["book/b.ipynb"] = 100.0
        return {(1, 0): 300.0, (2, 0): 240.0, (1, 2): 420.0}[threads, busy], 0, 2.1

    shown = []
    lines = bench.build_lines(measure, limit=2.5, progress=shown.append)
    assert asked == {(1, 0): None, (2, 0): None, (1, 2): 750.0, (2, 2): 600.0}  # 2.5x each quiet build
    assert shown == lines[:4]  # each build's line as soon as it is measured, one thread count at a time
    assert ["THREADS=1, no added" in shown[0], "THREADS=1, beside" in shown[1], "THREADS=2, no added" in shown[2]] == [
        True, True, True]
    assert ("| `make book` from a fresh clone, THREADS=2, beside two busy processes (load 3.9 at start), "
            "stopped after 10.0 min (2.5x the quiet build) | > 10.0 min | |") in lines
    assert "| THREADS=1: busy / quiet build time | 1.40 | ≤ 2 |" in lines
    assert "| THREADS=2: busy / quiet build time | > 2.50 | ≤ 2 |" in lines
    assert "| busy: THREADS=1 / THREADS=2 build time | < 0.70 | |" in lines
    # Each notebook's seconds in each build, in the order the builds ran; "—" where a stopped build never got to it.
    assert ("| notebook (seconds in the build) | THREADS=1, quiet | THREADS=1, busy | THREADS=2, quiet "
            "| THREADS=2, busy |") in lines
    assert "| book/a.ipynb | 10 | 12 | 20 | 22 |" in lines and "| book/b.ipynb | 100 | 100 | 100 | — |" in lines


def test_a_builds_notebook_times_come_from_its_cache(tmp_path):
    import json
    import sqlite3

    cache = tmp_path / "project" / "_build" / ".jupyter_cache"
    assert bench.cached_notebook_seconds(cache) == {}  # no build, no times
    cache.mkdir(parents=True)
    with sqlite3.connect(cache / "global.db") as db:  # the table jupyter-cache keeps, with the columns read here
        db.execute("create table nbcache (uri text, data text)")
        db.executemany("insert into nbcache values (?, ?)", [
            (str(tmp_path / "project" / "book" / "x.ipynb"), json.dumps({"execution_seconds": 12.5})),
            ("/elsewhere/y.ipynb", json.dumps({"execution_seconds": 3.0}))])
    assert bench.cached_notebook_seconds(cache) == {"book/x.ipynb": 12.5, "y.ipynb": 3.0}


def test_the_coursework_sweeps_are_timed_both_ways():
    alone, together, ratio = bench.coursework_sweeps(epochs=1, seeds=(0,))
    assert alone > 0 and together > 0 and ratio == pytest.approx(alone / together)


def test_the_signal_grid_is_timed_network_by_network_and_stacked():
    grid = dict(depth=(2, 4), activation=("tanh",), init=("he_normal", "xavier_normal"), scale=(1.0,))
    filed, before, after = bench.signal_grid_seconds(repeats=1, grid=grid)
    assert filed > 0 and before > 0 and after > 0


def test_a_build_is_timed_on_a_fresh_clone_beside_busy_processes(tmp_path, monkeypatch):
    import os
    import subprocess

    # A stand-in project: its `make book` writes what it was given and fails when asked to.
    repo, seen = tmp_path / "repo", tmp_path / "seen"
    repo.mkdir()
    (repo / "Makefile").write_text(
        f"book:\n\techo $(THREADS) $$PYTHONPATH $$OMP_NUM_THREADS > {seen}\n\ttest -z \"$(FAIL)\"\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").write_text("")
    (repo / ".gitignore").write_text(".venv\n")
    for command in (["init", "-q"], ["add", "Makefile", ".gitignore"],
                    ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "stand-in"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    started, start_busy = [], bench.busy_processes
    monkeypatch.setattr(bench, "busy_processes", lambda count: started.extend(start_busy(count)) or started)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    seconds, status, load = bench.book_build_seconds(2, busy=2, root=repo)
    assert status == 0 and seconds > 0 and load >= 0
    threads, pythonpath, *rest = seen.read_text().split()
    assert threads == "2" and pythonpath.endswith("clone") and pythonpath != str(repo) and rest == []
    assert len(started) == 2 and all(p.poll() is not None for p in started)  # both busy loops stopped
    monkeypatch.setenv("FAIL", "1")
    started.clear()
    _, status, _ = bench.book_build_seconds(1, busy=2, root=repo)
    assert status != 0 and len(started) == 2 and all(p.poll() is not None for p in started)
    assert not os.path.exists(pythonpath)  # the clone is gone
    # A build past its limit is stopped, with what it started (here a sleep in a child shell).
    (repo / "Makefile").write_text(f"book:\n\tsh -c 'echo $$$$ > {seen}; sleep 60'\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "slow"], cwd=repo,
                   check=True)
    seconds, status, _ = bench.book_build_seconds(1, root=repo, limit=1.0)
    assert status is None and 1.0 <= seconds < 20
    child = int(seen.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}") or "Z" in open(f"/proc/{child}/stat").read().split()[2]
    with pytest.raises(RuntimeError, match="borrows .*make venv"):
        bench.book_build_seconds(1, root=tmp_path)
    # A Makefile whose book would reinstall the environment is refused before anything runs.
    (repo / "Makefile").write_text("book: venv\n\ttrue\nvenv:\n\tpip install -e .\n")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "venv"], cwd=repo,
                   check=True)
    started.clear()
    with pytest.raises(RuntimeError, match="would reinstall into"):
        bench.book_build_seconds(1, busy=2, root=repo)
    assert started == []
