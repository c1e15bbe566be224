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


def test_report_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "fit_overhead", lambda: (1.0, 1.0, 1.0))
    report = bench.run_bench(tmp_path / "bench.md", notebooks=False, grading=False)
    assert (tmp_path / "bench.md").read_text() == report
    assert "| `fit` / bare loop | 1.000 | ≤ 1.10 |" in report and "signal explorer callback, median" in report
