"""`make book` never reports a broken book as built.

Jupyter Book stores a notebook in its jupyter-cache only when every cell ran
(`allow_errors: false`). A notebook whose execution failed or timed out has no
record there, but Sphinx, seeing an unchanged source, would not read it again
on the next build and would publish the cut-off page with exit code 0. So
before the build, `pending(..., touch=True)` marks every notebook without a
record as changed (its modification time), which makes Sphinx re-read and the
cache re-execute it; after the build, `pending()` must be empty, or the build
fails naming the notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .notebooks import ROOT

CACHE = Path("_build") / ".jupyter_cache"


def executed_notebooks(root=ROOT) -> list[Path]:
    """The table of contents' notebooks that the build executes (labs are shown unexecuted)."""
    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    skipped = [p.rstrip("*").rstrip("/") for p in (config.get("execute") or {}).get("exclude_patterns", [])]
    files = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    paths = [root / (f + ".ipynb") for f in files]
    return [p for p in paths if p.is_file() and not any(p.relative_to(root).as_posix().startswith(s)
                                                         for s in skipped if s)]


def pending(root=ROOT, cache_folder=None, touch=False) -> list[str]:
    """Notebooks with no successful execution record for their current source; `touch` marks them changed."""
    import nbformat
    from jupyter_cache import get_cache

    root = Path(root)
    folder = Path(cache_folder) if cache_folder else root / CACHE
    cache = get_cache(str(folder)) if folder.is_dir() else None
    missing = []
    for path in executed_notebooks(root):
        try:
            if cache is None:
                raise KeyError(path)
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(path.relative_to(root).as_posix())
            if touch:
                os.utime(path)
    return missing
