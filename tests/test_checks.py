import pytest
import torch

from traindeep import checks


def test_compare_passes_and_prints_one_line(capsys):
    assert checks.compare("same", torch.ones(3), torch.ones(3)) is None  # no stray `True` under a cell
    assert capsys.readouterr().out == "✓ same: exact match\n"


def test_compare_reports_shape_and_values(capsys):
    with pytest.raises(AssertionError, match=r"shape \(3,\), expected \(4,\)"):
        checks.compare("shape", torch.ones(3), torch.ones(4))
    with pytest.raises(AssertionError, match="max .difference. 1.00e-01 — try again"):
        checks.compare("values", torch.ones(3), torch.ones(3) * 1.1, hint="try again")
    with pytest.raises(AssertionError, match="got None"):
        checks.compare("none", None, torch.ones(3))
    assert capsys.readouterr().out.count("✗") == 3


def test_check_std_names_the_measured_and_expected_value():
    torch.manual_seed(0)
    w = torch.randn(128, 256) * 0.0884
    with pytest.raises(AssertionError, match="std 0.088., expected 0.1250 — did you use fan_out"):
        checks.check_std("he_normal", w, 0.125, hint="did you use fan_out?")
    checks.check_std("he_normal", torch.randn(128, 256) * 0.125, 0.125)


def test_check_range_and_true():
    checks.check_range("acc", 0.9, 0.8, 1.0)
    with pytest.raises(AssertionError, match="expected between"):
        checks.check_range("acc", float("nan"), 0.8, 1.0)
    with pytest.raises(AssertionError, match="expected a number"):
        checks.check_range("acc", "high", 0, 1)
    with pytest.raises(AssertionError, match="measured"):
        checks.check_true("cond", False, "measured 3")
