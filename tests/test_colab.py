"""A Colab-like runtime: Colab's front-end packages, traindeep installed only by the setup cell.

Colab ships its own kernel, IPython, ipywidgets 7 and matplotlib, and already has torch, numpy and
scikit-learn. This test builds a fresh virtual environment with those versions (torch, numpy and
scikit-learn are lent from ours through a .pth file, as Colab's would be there already), lets the
first notebook's setup cell install the course package, then executes chapter 1 (explorer
included), the lecture and lab 1 filled with its solution, and requires that no cell fails.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
# What Colab ships (checked against a Colab runtime's `pip list`): the packages whose versions
# differ most from ours and that the notebooks touch.
COLAB_PINS = ["ipywidgets==7.7.1", "ipykernel==6.17.1", "ipython==7.34.0", "matplotlib==3.10.0"]
# Lent from this environment, with their metadata so that pip sees them installed.
LENT = ["torch", "torchgen", "functorch", "numpy", "numpy.libs", "sympy", "mpmath", "networkx", "jinja2",
        "markupsafe", "fsspec", "filelock", "typing_extensions.py", "scipy", "scipy.libs", "sklearn",
        "scikit_learn.libs", "joblib", "threadpoolctl.py"]
NOTEBOOKS = ["book/01_why_training_fails.ipynb", "lectures/01_why_training_fails.ipynb",
             "solutions/lab01_signal_propagation.ipynb"]

pytestmark = pytest.mark.skipif(os.environ.get("TRAINDEEP_SKIP_COLAB") == "1", reason="TRAINDEEP_SKIP_COLAB=1")


def _site_packages(python) -> Path:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout
    return Path(out.strip())


def _lend(ours: Path, folder: Path) -> None:
    folder.mkdir()
    for entry in ours.iterdir():
        name = entry.name
        base = name.split("-")[0].lower().replace("_", "-") if name.endswith(".dist-info") else None
        wanted = name in LENT or (base is not None and any(
            base == item.split(".")[0].lower().replace("_", "-") for item in LENT + ["scikit_learn"]))
        if wanted:
            (folder / name).symlink_to(entry)


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    root = tmp_path_factory.mktemp("colab")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    ours = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    _lend(ours, root / "lent")
    (_site_packages(python) / "colab_lent.pth").write_text(str(root / "lent") + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *COLAB_PINS],
                   check=True, timeout=900)
    probe = subprocess.run([python, "-c", "import traindeep"], cwd=root, capture_output=True)
    assert probe.returncode != 0, "traindeep must come from the setup cell, not be there already"
    kernels = root / "share" / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    return {"python": python, "root": root, "jupyter_path": str(root / "share" / "jupyter")}


def _execute(colab, relative, monkeypatch, setup: bool):
    nb = nbformat.read(ROOT / relative, as_version=4)
    monkeypatch.setenv("JUPYTER_PATH", colab["jupyter_path"])
    env = {"TRAINDEEP_SETUP": "force", "TRAINDEEP_SOURCE": str(ROOT), "PIP_NO_INPUT": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"} if setup else {}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if not setup:
        monkeypatch.delenv("TRAINDEEP_SETUP", raising=False)
    workdir = colab["root"] / Path(relative).parent.name
    workdir.mkdir(exist_ok=True)
    client = NotebookClient(nb, timeout=600, kernel_name="colab", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    errors = [(c.get("id"), o.get("ename"), o.get("evalue")) for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    return nb, errors


def test_notebooks_run_in_a_colab_like_runtime(colab, monkeypatch):
    # The first notebook installs the package through its setup cell, as a student's first run would.
    chapter, errors = _execute(colab, NOTEBOOKS[0], monkeypatch, setup=True)
    assert errors == []
    setup_output = "".join(o.get("text", "") for o in chapter.cells[1].outputs)
    located = subprocess.run([colab["python"], "-c", "import traindeep, ipywidgets, matplotlib; "
                              "print(traindeep.__file__, ipywidgets.__version__, matplotlib.__version__)"],
                             cwd=colab["root"], capture_output=True, text=True, check=True).stdout.split()
    assert located[0].startswith(str(colab["root"] / "venv")), (located, setup_output)
    assert located[1:] == ["7.7.1", "3.10.0"], "the setup cell must not replace Colab's packages"
    explorer = next(c for c in chapter.cells if "signal_explorer(" in c.source)
    kinds = {kind for o in explorer.outputs for kind in o.get("data", {})}
    assert "image/png" in kinds and "application/vnd.jupyter.widget-view+json" in kinds, kinds
    for relative in NOTEBOOKS[1:]:
        _, errors = _execute(colab, relative, monkeypatch, setup=False)
        assert errors == [], relative
