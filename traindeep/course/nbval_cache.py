"""A pytest plugin: keep what nbval executes, so the book build does not execute it again.

`pytest --nbval-lax -p traindeep.course.nbval_cache --nbval-cache _build/.jupyter_cache ...` runs
nbval as usual. Alongside, it records every cell's outputs the way a notebook front end would
(nbclient's rules: streams merged, `clear_output` and display updates applied), and when every
cell of a notebook passed, it stores the executed notebook in the jupyter-cache that
`jupyter-book build` reads (`execute_notebooks: cache`). The build then finds each notebook
already executed, with outputs from this very run, and only renders it. A notebook with a
failing or skipped cell is not stored: the build executes it and reports the error itself.

Workers (pytest-xdist) write executed notebooks to a staging folder; the controlling process
adds them to the cache once at the end, so the cache's database has one writer.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

STAGING = "nbval-executed"


def pytest_addoption(parser):
    parser.addoption("--nbval-cache", default=None, metavar="DIR",
                     help="store notebooks whose cells all passed in this jupyter-cache folder")


def pytest_configure(config):
    folder = config.getoption("nbval_cache")
    if not folder:
        return
    from nbval.kernel import RunningKernel

    _observe(RunningKernel)
    config._nbval_cache = Path(folder).resolve()
    if not hasattr(config, "workerinput"):  # the controller starts from an empty staging folder
        shutil.rmtree(config._nbval_cache / STAGING, ignore_errors=True)


def _observe(kernel_class):
    """Make every RunningKernel record its cells' outputs (once per process)."""
    if getattr(kernel_class, "_records_outputs", False):
        return
    execute, get_message = kernel_class.execute_cell_input, kernel_class.get_message

    def execute_cell_input(self, cell_input, allow_stdin=None):
        msg_id = execute(self, cell_input, allow_stdin=allow_stdin)
        self.recorded = CellRecord(msg_id)
        return msg_id

    def recording_get_message(self, stream, timeout=None):
        msg = get_message(self, stream, timeout=timeout)
        record = getattr(self, "recorded", None)
        if stream == "iopub" and record is not None:
            record.add(msg)
        return msg

    kernel_class.execute_cell_input = execute_cell_input
    kernel_class.get_message = recording_get_message
    kernel_class._records_outputs = True


class CellRecord:
    """One cell's outputs, built from its iopub messages as nbclient builds them."""

    def __init__(self, msg_id: str):
        self.msg_id = msg_id
        self.outputs: list = []
        self.execution_count = None
        self._clear_before_next = False
        self._inside_output_widget = False

    def add(self, msg) -> None:
        import nbformat

        if msg.get("parent_header", {}).get("msg_id") != self.msg_id:
            return
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_msg":
            # An ipywidgets Output widget announces the messages it captures by setting its msg_id
            # (and clears it when done); a front end shows those inside the widget, not in the cell.
            state = content.get("data", {}).get("state", {})
            if "msg_id" in state:
                self._inside_output_widget = bool(state["msg_id"])
        elif self._inside_output_widget:
            return
        elif kind == "execute_input":
            self.execution_count = content.get("execution_count")
        elif kind == "clear_output":
            if content.get("wait"):
                self._clear_before_next = True
            else:
                self.outputs = []
        elif kind == "update_display_data":
            display_id = content.get("transient", {}).get("display_id")
            for out in self.outputs:
                if display_id and out.get("_display_id") == display_id:
                    out["data"], out["metadata"] = content["data"], content["metadata"]
        elif kind in ("stream", "display_data", "execute_result", "error"):
            if self._clear_before_next:
                self.outputs, self._clear_before_next = [], False
            if kind == "stream" and self.outputs and self.outputs[-1].get("output_type") == "stream" \
                    and self.outputs[-1]["name"] == content["name"]:
                self.outputs[-1]["text"] += content["text"]
                return
            out = nbformat.v4.output_from_msg(msg)
            display_id = content.get("transient", {}).get("display_id")
            if display_id:
                out["_display_id"] = display_id
            self.outputs.append(out)

    def finished_outputs(self) -> list:
        return [{k: v for k, v in out.items() if k != "_display_id"} for out in self.outputs]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    started = time.perf_counter()
    yield
    config = item.config
    if getattr(config, "_nbval_cache", None) is None or not hasattr(item, "cell_num"):
        return
    record = getattr(item.parent.kernel, "recorded", None)
    if record is not None:
        notebook = item.parent
        notebook.executed_cells = {**getattr(notebook, "executed_cells", {}),
                                   item.cell_num: (record.finished_outputs(), record.execution_count)}
        notebook.seconds = getattr(notebook, "seconds", 0.0) + time.perf_counter() - started


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if hasattr(item, "cell_num") and outcome.get_result().outcome != "passed":
        item.parent.broken = True


def pytest_runtest_teardown(item, nextitem):
    config = item.config
    if getattr(config, "_nbval_cache", None) is None or not hasattr(item, "cell_num"):
        return
    if nextitem is not None and nextitem.parent is item.parent:
        return
    notebook = item.parent
    executed = getattr(notebook, "executed_cells", {})
    code_cells = [c for c in notebook.nb.cells if c.cell_type == "code"]
    if getattr(notebook, "broken", False) or len(executed) != len(code_cells):
        return
    import nbformat

    nb = nbformat.read(str(notebook.fspath), as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.outputs = [nbformat.from_dict(out) for out in executed[number][0]]
        cell.execution_count = executed[number][1]
    staging = config._nbval_cache / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    name = str(Path(str(notebook.fspath)).resolve()).strip("/").replace("/", "__")
    (staging / name).write_text(json.dumps({"path": str(Path(str(notebook.fspath)).resolve()),
                                            "seconds": getattr(notebook, "seconds", None),
                                            "notebook": nb}), encoding="utf-8")


def pytest_sessionfinish(session):
    config = session.config
    if getattr(config, "_nbval_cache", None) is None or hasattr(config, "workerinput"):
        return
    stored = store_executed(config._nbval_cache)
    if stored:
        print(f"\nnbval_cache: {len(stored)} executed notebooks stored in {config._nbval_cache}")


def store_executed(cache_folder: Path) -> list[str]:
    """Add every staged notebook to the jupyter-cache in `cache_folder`; return their paths."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    staging = Path(cache_folder) / STAGING
    if not staging.is_dir():
        return []
    cache = get_cache(str(cache_folder))
    stored = []
    for staged in sorted(staging.iterdir()):
        entry = json.loads(staged.read_text(encoding="utf-8"))
        nb = nbformat.from_dict(entry["notebook"])
        cache.cache_notebook_bundle(CacheBundleIn(nb, entry["path"], data={"execution_seconds": entry["seconds"]}),
                                    check_validity=False, overwrite=True)
        stored.append(entry["path"])
    shutil.rmtree(staging)
    return stored
