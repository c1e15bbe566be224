"""make verify's harness: a claim that holds at offset 0 only is named, with its cell, offset and threads."""

import nbformat
import pytest

from traindeep.__main__ import main
from traindeep.course import verify


def _fixture(folder):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import os\nimport traindeep\ndraw = int(traindeep.rng(0).integers(1000))",
                                  id="draw"),
        # A claim fitted to one draw: true at offset 0 (850), false at offset 1 (334).
        nbformat.v4.new_code_cell('assert draw > 500, f"the draw was {draw}"', id="fitted-claim"),
        nbformat.v4.new_code_cell('assert os.environ["OMP_NUM_THREADS"] in ("1", "2")\nprint("still running")',
                                  id="after"),
        nbformat.v4.new_code_cell('raise ValueError("meant to fail")', id="expected-error",
                                  metadata={"tags": ["raises-exception"]}),
    ]
    path = folder / "fixture.ipynb"
    nbformat.write(nb, path)
    return path


def test_verify_names_the_claim_that_holds_for_one_draw_only(tmp_path):
    path = _fixture(tmp_path)
    out = tmp_path / "partial" / "verify.md"
    runs = verify.verify([path], offsets=[0, 1], threads=[1], cores=2, cell_timeout=60, log=lambda *_: None,
                         out=out)
    assert "fitted-claim" in out.read_text(), "the report is written as runs finish"
    by_offset = {r.offset: r for r in runs}
    assert by_offset[0].ok and by_offset[0].seconds > 0
    failures = by_offset[1].failures
    assert [(f.cell, f.ename) for f in failures] == [("fitted-claim", "AssertionError")]
    assert "the draw was 334" in failures[0].message
    text = verify.report(runs, root=tmp_path)
    assert "| fixture.ipynb | fitted-claim | 1 | 1 | AssertionError: the draw was 334 |" in text
    assert "2 runs, 1 with failures, 1 failing cell(s)." in text


def test_the_command_writes_the_table_and_fails(tmp_path, capsys):
    path = _fixture(tmp_path)
    out = tmp_path / "verify.md"
    code = main(["verify", str(path), "--offsets", "1", "--threads", "2", "--out", str(out)])
    assert code == 1
    assert "| 1 | 2 |" in out.read_text() and "fitted-claim" in out.read_text()
    assert main(["verify", str(path), "--offsets", "0", "--threads", "1", "--out", str(out)]) == 0
    assert "0 with failures" in out.read_text()


def test_bad_arguments_are_named(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert main(["verify", "--offsets", "one"]) == 2
    assert "--offsets must be a comma-separated list" in capsys.readouterr().err
    with pytest.raises(ValueError):
        verify.parse_list("-1", "--threads")
