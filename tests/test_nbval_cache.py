"""nbval executes each notebook once; the book build reuses those outputs (traindeep/course/nbval_cache.py)."""
import subprocess
import sys
from pathlib import Path

import nbformat

from traindeep.course.nbval_cache import CellRecord

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def message(kind, content, parent="run-1"):
    return {"msg_type": kind, "header": {"msg_type": kind}, "content": content, "parent_header": {"msg_id": parent}}


def test_a_record_keeps_what_a_front_end_would_show():
    record = CellRecord("run-1")
    record.add(message("execute_input", {"execution_count": 7, "code": "..."}))
    record.add(message("stream", {"name": "stdout", "text": "a\n"}))
    record.add(message("stream", {"name": "stdout", "text": "b\n"}))
    record.add(message("stream", {"name": "stdout", "text": "from another cell\n"}, parent="run-0"))
    record.add(message("display_data", {"data": {"text/plain": "old"}, "metadata": {},
                                        "transient": {"display_id": "d1"}}))
    record.add(message("update_display_data", {"data": {"text/plain": "new"}, "metadata": {},
                                               "transient": {"display_id": "d1"}}))
    # What an ipywidgets Output widget captures belongs to the widget, not to the cell.
    record.add(message("comm_msg", {"comm_id": "w", "data": {"method": "update", "state": {"msg_id": "run-1"}}}))
    record.add(message("display_data", {"data": {"image/png": "xx"}, "metadata": {}}))
    record.add(message("comm_msg", {"comm_id": "w", "data": {"method": "update", "state": {"msg_id": ""}}}))
    record.add(message("execute_result", {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": 7}))
    outputs = record.finished_outputs()
    assert record.execution_count == 7
    assert [o["output_type"] for o in outputs] == ["stream", "display_data", "execute_result"]
    assert outputs[0]["text"] == "a\nb\n"
    assert outputs[1]["data"] == {"text/plain": "new"} and "_display_id" not in outputs[1]
    nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=outputs)]))


def test_clear_output_clears_now_or_before_the_next_output():
    record = CellRecord("run-1")
    record.add(message("stream", {"name": "stdout", "text": "progress 1\n"}))
    record.add(message("clear_output", {"wait": True}))
    assert len(record.outputs) == 1
    record.add(message("stream", {"name": "stdout", "text": "progress 2\n"}))
    assert [o["text"] for o in record.finished_outputs()] == ["progress 2\n"]
    record.add(message("clear_output", {"wait": False}))
    assert record.finished_outputs() == []


def write_book(folder: Path, values: dict) -> None:
    (folder / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: cache\n")
    (folder / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n"
                                     + "".join(f"  - file: {name}\n" for name in values))
    (folder / "intro.md").write_text("# Intro\n")
    for name, value in values.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"),
                                             nbformat.v4.new_code_cell(f"print({value} * 2)")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")


def nbval_run(folder: Path, cache: Path, *notebooks: str):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "traindeep.course.nbval_cache", "--nbval-cache", str(cache),
                           "--nbval-lax", *notebooks], cwd=folder, capture_output=True, text=True, timeout=300)


def executed_by_build(folder: Path) -> list[str]:
    result = subprocess.run([str(BIN / "jupyter-book"), "build", "-W", "-n", "--keep-going", str(folder)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted(Path(line.split(":")[0]).stem for line in result.stdout.splitlines()
                  if "Executing notebook" in line)


def test_the_build_renders_what_nbval_ran_and_reexecutes_only_an_edited_notebook(tmp_path):
    write_book(tmp_path, {"first": 21, "second": 50})
    nbval = nbval_run(tmp_path, tmp_path / "_build/.jupyter_cache", "first.ipynb", "second.ipynb")
    assert nbval.returncode == 0, nbval.stdout[-3000:]
    assert "2 executed notebooks stored" in nbval.stdout
    assert executed_by_build(tmp_path) == [], "the build executed a notebook nbval had already run"
    page = (tmp_path / "_build/html/first.html").read_text()
    assert "42" in page, "nbval's output is on the page"
    write_book(tmp_path, {"first": 21, "second": 60})
    assert executed_by_build(tmp_path) == ["second"]
    assert "120" in (tmp_path / "_build/html/second.html").read_text()


def test_a_failing_notebook_is_not_stored(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)"),
                                         nbformat.v4.new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "broken.ipynb")
    cache = tmp_path / "cache"
    result = nbval_run(tmp_path, cache, "broken.ipynb")
    assert result.returncode == 1 and "ZeroDivisionError" in result.stdout
    assert "stored" not in result.stdout and not (cache / "nbval-executed").exists()
