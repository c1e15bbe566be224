"""`make slides`: offline reveal.js decks, with MyST markup turned into plain markdown."""
import shutil
from pathlib import Path

import nbformat
import pytest

from traindeep.course.slides import WEB, export_slides

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (WEB / "reveal.js").is_dir(), reason="needs `make web-modules` (.cache/web)")
def test_a_deck_exports_offline_without_raw_myst(tmp_path):
    (tmp_path / "lectures").mkdir()
    shutil.copy(ROOT / "references.bib", tmp_path / "references.bib")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("(lec-demo)=\n# A demo deck\n\nAs {cite}`he2015delving` showed."),
        nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "lectures" / "01_demo.ipynb")
    (deck,) = export_slides(tmp_path / "out", lectures=tmp_path / "lectures")
    html = deck.read_text(encoding="utf-8")
    assert "He et al. (2015)" in html and "{cite}" not in html and "(lec-demo)=" not in html
    assert "42" in html, "the demo ran"
    assert "assets/reveal.js" in html and "cdn.jsdelivr" not in html and "unpkg.com" not in html
    assert (tmp_path / "out" / "assets" / "mathjax").is_dir()
