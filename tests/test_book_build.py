"""make book never reports a broken book as built (traindeep/course/executed.py), on a tiny book."""
import subprocess
import sys
from pathlib import Path

import nbformat

from traindeep.course.executed import executed_notebooks, pending

BIN = Path(sys.executable).parent


def write_book(folder: Path, cells: dict, timeout: int = 60) -> None:
    (folder / "_config.yml").write_text(f"title: t\nexecute:\n  execute_notebooks: cache\n  timeout: {timeout}\n"
                                        "  exclude_patterns:\n    - \"labs/*\"\n")
    (folder / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n"
                                     + "".join(f"  - file: {name}\n" for name in cells))
    (folder / "intro.md").write_text("# Intro\n")
    for name, source in cells.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"),
                                             nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")


def make_book(folder: Path):
    """What `make book` does: re-execute what failed, build, then check every notebook has a record."""
    rerun = pending(folder, touch=True)
    build = subprocess.run([str(BIN / "jupyter-book"), "build", "-W", "-n", "--keep-going", str(folder)],
                           capture_output=True, text=True, timeout=300)
    return rerun, build, pending(folder)


def test_a_notebook_that_failed_once_is_executed_again_and_then_built(tmp_path):
    flag = tmp_path / "machine-is-busy"
    flag.write_text("")
    write_book(tmp_path, {"good": "print(6 * 7)",
                          "flaky": f"import os\nassert not os.path.exists({str(flag)!r}), 'too slow today'\n"
                                   "print('flaky ran to the end')"})
    rerun, build, missing = make_book(tmp_path)
    assert build.returncode != 0 and missing == ["flaky.ipynb"]
    flag.unlink()  # the same source, a quieter machine
    rerun, build, missing = make_book(tmp_path)
    assert rerun == ["flaky.ipynb"], "the failed notebook was not marked for execution again"
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    assert missing == []
    assert "flaky ran to the end" in (tmp_path / "_build/html/flaky.html").read_text()
    executed = [line for line in build.stdout.splitlines() if "Executing notebook" in line]
    assert len(executed) == 1 and "flaky" in executed[0], "only the failed notebook runs again"


def test_a_timeout_names_the_notebook_and_a_clean_build_logs_no_traceback(tmp_path):
    write_book(tmp_path, {"slow": "import time\ntime.sleep(30)", "quick": "print(1)"}, timeout=3)
    _, build, missing = make_book(tmp_path)
    assert build.returncode != 0 and missing == ["slow.ipynb"]
    assert "slow.err.log" in build.stderr
    assert "timed out" in (tmp_path / "_build/html/reports/slow.err.log").read_text().lower()
    clean = tmp_path / "clean"
    clean.mkdir()
    write_book(clean, {"quick": "print(1)"})
    _, build, missing = make_book(clean)
    assert build.returncode == 0 and missing == []
    assert "Traceback" not in build.stdout + build.stderr, (build.stdout + build.stderr)[-3000:]


def test_labs_are_not_expected_to_execute(tmp_path):
    write_book(tmp_path, {"chapter": "print(1)", "labs/lab01": "raise NotImplementedError"})
    assert [p.name for p in executed_notebooks(tmp_path)] == ["chapter.ipynb"]
