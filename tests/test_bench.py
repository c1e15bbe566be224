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
    report = bench.run_bench(tmp_path / "bench.md", notebooks=False, grading=False)
    assert (tmp_path / "bench.md").read_text() == report
    assert "| `fit` / bare loop | 1.000 | ≤ 1.10 |" in report and "signal explorer callback, median" in report
    assert "| learning-rate explorer callback, median | 42 ms | ≤ 100 ms |" in report
    assert "| one by one / stacked, batch 64 | 6.0 | ≥ 5 |" in report and "| alone / batched | 3.0 | ≥ 3 |" in report


def test_the_coursework_sweeps_are_timed_both_ways():
    alone, together, ratio = bench.coursework_sweeps(epochs=1, seeds=(0,))
    assert alone > 0 and together > 0 and ratio == pytest.approx(alone / together)
