"""Colab copies: what a badge opens carries no MyST-only syntax (traindeep/course/colab.py)."""
from pathlib import Path

import nbformat
import pytest

from traindeep.course import colab

ROOT = Path(__file__).resolve().parent.parent
REPO = ("me", "course", "main")
SITE = "https://me.github.io/course/"
LABELS = {"ch-initialization": ("book/02_initialization.ipynb", "Initialization"),
          "sec-he": ("book/02_initialization.ipynb", "He initialization")}
CITES = {"he2015delving": "He et al. (2015)", "glorot2010understanding": "Glorot & Bengio (2010)"}


def clean(source, page="book/03_activations.ipynb"):
    return colab.clean_markdown(source, page, LABELS, CITES, REPO)


@pytest.mark.parametrize("source,expected", [
    ("(ch-activations)=\n# Activations\n", "# Activations\n"),
    ("as shown by {cite}`he2015delving`.", f"as shown by [He et al. (2015)]({SITE}references.html)."),
    ("{cite:p}`glorot2010understanding,he2015delving`",
     f"[Glorot & Bengio (2010)]({SITE}references.html); [He et al. (2015)]({SITE}references.html)"),
    ("see {ref}`ch-initialization`", f"see [Initialization]({SITE}book/02_initialization.html#ch-initialization)"),
    ("see {ref}`the He scale <sec-he>`", f"see [the He scale]({SITE}book/02_initialization.html#sec-he)"),
    ("[chapter 1](01_why_training_fails.ipynb#sec-x)", f"[chapter 1]({SITE}book/01_why_training_fails.html#sec-x)"),
    ("[lab](../labs/lab01.ipynb)", f"[lab]({SITE}labs/lab01.html)"),
    ("```{note}\nBiases start at zero.\n```", "> **Note.**\n>\n> Biases start at zero."),
    (":::{admonition} Beyond the seeds\n:class: tip\nLSUV.\n:::", "> **Beyond the seeds.**\n>\n> LSUV."),
    ("```python\nx = 1\n```", "```python\nx = 1\n```"),
    ("the slope {math}`\\alpha`", "the slope $\\alpha$"),
])
def test_myst_markup_becomes_plain_markdown(source, expected):
    assert clean(source) == expected


def test_a_reference_to_nothing_is_an_error_that_names_it():
    with pytest.raises(colab.MarkupError, match="label 'sec-missing'"):
        clean("{ref}`sec-missing`")
    with pytest.raises(colab.MarkupError, match="citation \\['nobody2020'\\]"):
        clean("{cite}`nobody2020`")


def test_citations_are_read_from_the_bibliography(tmp_path):
    bib = tmp_path / "r.bib"
    bib.write_text("@article{a1,\n  author = {Ioffe, Sergey and Szegedy, Christian},\n  year = {2015},\n}\n"
                   "@misc{b2,\n  author = {Diederik P. Kingma},\n  year = 2014,\n}\n"
                   "@misc{c3,\n  author = {A, B and C, D and E, F},\n  year = {2020},\n}\n")
    assert colab.citations(bib) == {"a1": "Ioffe & Szegedy (2015)", "b2": "Kingma (2014)", "c3": "A et al. (2020)"}


def test_every_copy_of_the_real_book_is_clean_and_keeps_its_cells(tmp_path):
    written = colab.write_copies(tmp_path)
    sources = {p.relative_to(tmp_path).as_posix() for p in written}
    expected = {p.relative_to(ROOT).as_posix() for f in colab.COPIED_FOLDERS for p in (ROOT / f).glob("*.ipynb")}
    assert sources == expected and "book/01_why_training_fails.ipynb" in sources
    for path in written:
        copy = nbformat.read(path, as_version=4)
        original = nbformat.read(ROOT / path.relative_to(tmp_path), as_version=4)
        assert colab.myst_leftovers(copy) == [], path
        assert [c.id for c in copy.cells] == [c.id for c in original.cells]
        assert [c.source for c in copy.cells if c.cell_type == "code"] == \
            [c.source for c in original.cells if c.cell_type == "code"]
        assert copy.metadata == original.metadata
