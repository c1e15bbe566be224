import json
import shutil
from pathlib import Path

import nbformat
import pytest

from traindeep.course import notebooks

ROOT = Path(__file__).resolve().parent.parent
ALL = sorted(p for folder in ("book", "lectures", "solutions", "labs") for p in (ROOT / folder).glob("*.ipynb"))


def test_every_notebook_is_stamped_and_badges_point_home():
    assert notebooks.stamp_all(ROOT, check_only=True) == []
    assert notebooks.badge_problems(ROOT) == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_conventions(path):
    nb = notebooks.read_notebook(path)
    assert nb.cells[0].id == "colab-badge" and "colab-badge.svg" in nb.cells[0].source
    assert nb.cells[1].id == "colab-setup" and '"google.colab" in sys.modules' in nb.cells[1].source
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert nb.cells[2].cell_type == "markdown" and nb.cells[2].source.lstrip("(").count("# ") >= 1
    if path.parent.name == "book":
        text = "\n".join(c.source for c in nb.cells)
        for heading in ("Learning objectives", "## Summary", "## Exercises", "seed_everything(0)"):
            assert heading in text, f"{path.name} lacks {heading!r}"


def make_project(tmp_path, url="https://github.com/me/course", branch="dev"):
    (tmp_path / "_config.yml").write_text(f"repository:\n  url: {url}\n  branch: {branch}\n")
    (tmp_path / "book").mkdir()
    shutil.copy(ROOT / "book" / "01_why_training_fails.ipynb", tmp_path / "book" / "01_x.ipynb")
    return tmp_path


def test_stamp_detects_a_changed_repository_and_fixes_it(tmp_path):
    project = make_project(tmp_path)
    assert notebooks.stamp_all(project, check_only=True) == ["book/01_x.ipynb"]
    assert notebooks.stamp_all(project) == ["book/01_x.ipynb"]
    assert notebooks.stamp_all(project, check_only=True) == []
    nb = notebooks.read_notebook(project / "book" / "01_x.ipynb")
    assert "github/me/course/blob/colab/book/01_x.ipynb" in nb.cells[0].source  # the Colab copy
    assert "git+https://github.com/me/course@dev" in nb.cells[1].source
    assert [c.id for c in nb.cells].count("colab-badge") == 1


def test_the_published_address_follows_the_repository(tmp_path):
    project = make_project(tmp_path)
    config = project / "_config.yml"
    config.write_text(config.read_text() + "sphinx:\n  config:\n    html_baseurl: https://old.github.io/x/\n")
    assert "_config.yml" in notebooks.stamp_all(project, check_only=True)
    notebooks.stamp_all(project)
    assert "    html_baseurl: https://me.github.io/course/\n" in config.read_text()
    assert notebooks.stamp_all(project, check_only=True) == []


def test_the_real_config_names_the_published_site():
    assert "html_baseurl: https://your-org.github.io/training-deep-networks/" in (ROOT / "_config.yml").read_text()


def test_badge_pointing_elsewhere_is_reported(tmp_path):
    project = make_project(tmp_path)
    notebooks.stamp_all(project)
    path = project / "book" / "01_x.ipynb"
    nb = notebooks.read_notebook(path)
    nb.cells[0].source = nb.cells[0].source.replace("01_x", "02_missing")
    notebooks.write_notebook(nb, path)
    assert notebooks.badge_problems(project) == ["book/01_x.ipynb: badge points to book/02_missing.ipynb"]


def test_lecture_links_to_the_book_become_published_pages(tmp_path):
    """In Colab a lecture or lab opens alone, so `../book/X.ipynb` must become the published page."""
    project = make_project(tmp_path)
    (project / "lectures").mkdir()
    nb = notebooks.read_notebook(project / "book" / "01_x.ipynb")
    nb.cells.append(nbformat.v4.new_markdown_cell("Read [the chapter](../book/01_x.ipynb#symmetry) and "
                                                  "[another](../book/02_missing.ipynb).", id="links"))
    notebooks.write_notebook(nb, project / "lectures" / "01_x.ipynb")
    assert "lectures/01_x.ipynb" in notebooks.stamp_all(project)
    text = notebooks.read_notebook(project / "lectures" / "01_x.ipynb").cells[-1].source
    assert text == ("Read [the chapter](https://me.github.io/course/book/01_x.html#symmetry) and "
                    "[another](https://me.github.io/course/book/02_missing.html).")
    # chapters keep relative links (the book build checks them)
    assert "book/01_x.ipynb" not in notebooks.stamp_all(project)
    assert notebooks.link_problems(project) == [
        "lectures/01_x.ipynb: link to https://me.github.io/course/book/02_missing.html, "
        "but book/02_missing.ipynb does not exist"]


def test_repository_url_must_be_github(tmp_path):
    make_project(tmp_path, url="https://gitlab.com/me/course")
    with pytest.raises(ValueError, match="must look like https://github.com/OWNER/NAME"):
        notebooks.stamp_all(tmp_path)


@pytest.mark.parametrize("content,message", [
    (b"{not json", "invalid JSON at line 1"),
    (b'{"a": 1}', "JSON but not a notebook"),
    (b"\xff\xfe\x00binary", "not a text file"),
    (json.dumps({"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5,
                 "metadata": {}}).encode(), "not a valid nbformat-4 notebook"),
])
def test_read_notebook_explains_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    with pytest.raises(notebooks.NotebookError, match=message):
        notebooks.read_notebook(path)


def test_setup_cell_does_nothing_outside_colab():
    source = notebooks.setup_source(("me", "course", "main"))
    namespace = {}
    exec(compile(source, "setup", "exec"), namespace)  # must not try to pip install here
    assert "source" not in namespace
    nbformat.validate(nbformat.v4.new_notebook(cells=notebooks.stamp_cells("book/x.ipynb", ("a", "b", "c"))))


def test_source_lint_catches_control_characters_and_offset_blind_seeding(tmp_path):
    from traindeep.course.lint import source_problems

    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("loss $\\lVert x \rVert$", id="m1"),
                nbformat.v4.new_code_cell('label = "$\\frac12$ ok"\ntitle = "$\frac12$ eaten"', id="c1"),
                nbformat.v4.new_code_cell("import torch\ntorch.manual_seed(0)\ng = torch.Generator().manual_seed(1)\n"
                                          "ok = torch.manual_seed(traindeep.shifted(0))\n"
                                          "print('torch.manual_seed(0) in a string is fine')", id="c2"),
                nbformat.v4.new_code_cell("torch.manual_seed(0)", id="c3", metadata={"tags": ["answer"]})]
    nbformat.write(nb, tmp_path / "book" / "01_x.ipynb")
    problems = source_problems(tmp_path)
    assert [p.split(":")[0] for p in problems] == ["book/01_x.ipynb cell m1", "book/01_x.ipynb cell c1",
                                                  "book/01_x.ipynb cell c2", "book/01_x.ipynb cell c2"]
    assert "torch.manual_seed(0) ignores the seed offset" in problems[2]
    assert "torch.Generator().manual_seed(1) ignores the seed offset" in problems[3]


def test_the_books_sources_pass_the_source_lint():
    from traindeep.course.lint import source_problems

    assert source_problems() == []
