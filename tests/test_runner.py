import nbformat
import pytest

from traindeep.course.runner import run_isolated, sandbox_command


def notebook(*sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.parametrize("sandbox", [False, True], ids=["plain", "sandboxed"])
def test_a_notebook_runs_in_its_own_folder(tmp_path, sandbox):
    if sandbox and sandbox_command() is None:
        pytest.skip("bwrap is not available on this machine")
    work = tmp_path / "work"
    work.mkdir()
    nb = notebook("import os\nprint(os.getcwd())", "open('made-here.txt', 'w').write('ok')", "1 / 0")
    result = run_isolated(nb, work, timeout=60, cell_timeout=30, sandbox=sandbox)
    assert result.problems == [] and result.nb is not None
    assert result.nb.cells[0].outputs[0]["text"].strip() == str(work)
    assert (work / "made-here.txt").read_text() == "ok"
    assert result.nb.cells[2].outputs[0]["ename"] == "ZeroDivisionError"  # errors do not stop the run


@pytest.mark.skipif(sandbox_command() is None, reason="bwrap is not available on this machine")
def test_the_sandbox_makes_the_rest_of_the_machine_read_only(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "outside.txt"
    result = run_isolated(notebook(f"open({str(target)!r}, 'w')"), work, timeout=60, cell_timeout=30)
    assert result.nb.cells[0].outputs[0]["ename"] in ("OSError", "PermissionError")
    assert "Read-only file system" in result.nb.cells[0].outputs[0]["evalue"]
    assert not target.exists()
