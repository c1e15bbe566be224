"""Colab copies: the notebooks as Colab shows them, free of MyST-only syntax.

The book's markdown uses MyST, which Jupyter Book renders and Colab does not: a student
who opens a chapter in Colab would see `(label)=` targets, {cite} and {ref} roles and
```{note} fences as raw text. `write_copies` writes a copy of every published notebook in
which targets are gone, citations read "Author (year)" and link to the book's references
page, cross-references and links to other notebooks lead to the published pages, and
admonitions are quotes. The deploy workflow pushes the copies to the branch COLAB_BRANCH,
which every Colab badge opens. Cell ids, metadata and code are untouched, so the grader
matches a lab submitted from a Colab copy exactly as one from the source.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from .notebooks import COLAB_BRANCH, ROOT, published_url, repository, site_url

__all__ = ["COLAB_BRANCH", "write_copies", "colab_copy", "clean_markdown", "myst_leftovers", "MarkupError"]


class MarkupError(ValueError):
    """A citation or cross-reference that names nothing the book defines."""

COPIED_FOLDERS = ("book", "lectures", "labs")

TARGET = re.compile(r"^\(([\w.:-]+)\)=[ \t]*\n?", re.M)
ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
FENCE = re.compile(r"^(```+|:::+)\{([\w-]+)\}[ \t]*([^\n]*)\n(.*?)^\1[ \t]*$", re.M | re.S)
RELATIVE_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([\w./-]+?)\.(?:ipynb|md)(#[\w-]*)?\)")
HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.M)
BIB_ENTRY = re.compile(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", re.S)
# What must not reach Colab: MyST targets, roles and directive fences.
MYST_ONLY = re.compile(r"^\([\w.:-]+\)=|\{[\w:-]+\}`|^(```+|:::+)\{", re.M)


def _bib_field(body: str, name: str) -> str:
    match = re.search(rf"\b{name}\s*=\s*(?:\{{(.+?)\}}|\"(.+?)\"|(\w+))\s*,?\s*$", body, re.M | re.I)
    value = next((g for g in match.groups() if g), "") if match else ""
    return re.sub(r"[{}]", "", value).strip()


def citations(bib_path=ROOT / "references.bib") -> dict[str, str]:
    """{key: 'Glorot & Bengio (2010)'} for every entry of the bibliography."""
    found = {}
    for key, body in BIB_ENTRY.findall(Path(bib_path).read_text(encoding="utf-8")):
        authors = [a.strip() for a in _bib_field(body, "author").split(" and ") if a.strip()]
        surnames = [a.split(",")[0].strip() if "," in a else a.split()[-1] for a in authors] or ["Anon."]
        who = surnames[0] if len(surnames) == 1 else (
            f"{surnames[0]} & {surnames[1]}" if len(surnames) == 2 else f"{surnames[0]} et al.")
        found[key] = f"{who} ({_bib_field(body, 'year') or 'n.d.'})"
    return found


def labels(root=ROOT) -> dict[str, tuple[str, str]]:
    """{label: (repository path of its page, the title of the heading it marks)} for every `(label)=`."""
    found = {}
    for folder in COPIED_FOLDERS:
        paths = sorted((Path(root) / folder).glob("*.ipynb")) + sorted((Path(root) / folder).glob("*.md"))
        for path in paths:  # notebooks, and prose-only pages such as book/measuring.md
            sources = ([c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
                       if path.suffix == ".ipynb" else [path.read_text(encoding="utf-8")])
            for source in sources:
                for match in TARGET.finditer(source):
                    heading = HEADING.search(source, match.end())
                    title = heading.group(1) if heading else match.group(1)
                    found[match.group(1)] = (path.relative_to(root).as_posix(), title)
    return found


def anchor(label: str) -> str:
    """The HTML id Sphinx gives a label."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _admonition(match: re.Match) -> str:
    kind, argument, body = match.group(2), match.group(3).strip(), match.group(4)
    lines = [line for line in body.rstrip("\n").split("\n") if not re.match(r"^:\w[\w-]*:", line)]
    if kind == "math":
        return "$$\n" + "\n".join(lines).strip() + "\n$$"
    title = argument if kind == "admonition" and argument else kind.capitalize()
    return "\n".join([f"> **{title}.**", ">", *(f"> {line}" if line else ">" for line in lines)])


def clean_markdown(source: str, page: str, labels_: dict, citations_: dict, repo=None) -> str:
    """`source` (a markdown cell of the repository file `page`) without MyST-only syntax."""
    site = site_url(repo)

    def role(match: re.Match) -> str:
        name, text = match.group(1), match.group(2)
        if name.startswith("cite"):
            keys = [k.strip() for k in text.split(",") if k.strip()]
            unknown = [k for k in keys if k not in citations_]
            if unknown:
                raise MarkupError(f"{page}: citation {unknown} is not in references.bib")
            return "; ".join(f"[{citations_[k]}]({site}references.html)" for k in keys)
        if name in ("ref", "numref"):
            shown = re.fullmatch(r"(.*?)\s*<([^>]+)>", text)
            text_, label = (shown.group(1), shown.group(2)) if shown else (None, text)
            if label not in labels_:
                raise MarkupError(f"{page}: {{{name}}} names the label {label!r}, which no notebook defines")
            target, title = labels_[label]
            return f"[{text_ or title}]({published_url(target, repo)}#{anchor(label)})"
        if name == "doc":
            target = str((Path(page).parent / text).as_posix())
            return f"[{Path(text).name}]({published_url(target + '.ipynb', repo)})"
        if name == "math":
            return f"${text}$"
        return f"`{text}`" if name in ("code", "command", "file", "kbd") else text

    def relative(match: re.Match) -> str:
        target = (Path(page).parent / match.group(1)).as_posix()
        target = re.sub(r"[^/]+/\.\./", "", target)
        return f"]({published_url(target + '.ipynb', repo)}{match.group(2) or ''})"

    source = TARGET.sub("", source)
    source = FENCE.sub(_admonition, source)
    source = ROLE.sub(role, source)
    return RELATIVE_LINK.sub(relative, source)


def colab_copy(nb, page: str, labels_: dict, citations_: dict, repo=None):
    """A copy of the notebook `nb` (repository path `page`) as Colab should open it."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = clean_markdown(cell.source, page, labels_, citations_, repo)
    return nb


def write_copies(out, root=ROOT) -> list[Path]:
    """Write the Colab copy of every notebook of COPIED_FOLDERS under `out` (same relative paths)."""
    root, out = Path(root), Path(out)
    repo = repository(root / "_config.yml")
    labels_, citations_ = labels(root), citations(root / "references.bib")
    written = []
    for folder in COPIED_FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            page = path.relative_to(root).as_posix()
            copy = colab_copy(nbformat.read(path, as_version=4), page, labels_, citations_, repo)
            target = out / page
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(copy, target)
            written.append(target)
    return written


def myst_leftovers(nb) -> list[str]:
    """The markdown lines of `nb` that still hold MyST-only syntax."""
    return [line for cell in nb.cells if cell.cell_type == "markdown"
            for line in cell.source.split("\n") if MYST_ONLY.search(line)]
