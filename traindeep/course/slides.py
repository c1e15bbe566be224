"""Export the lecture decks to reveal.js HTML that works offline.

nbconvert's slides template loads reveal.js, MathJax and require.js from CDNs;
here all three come from the npm folder `.cache/web` (see the Makefile's
`browser-tools` target) and are copied next to the slides. MyST markup
(label targets, citation and cross-reference roles) becomes plain markdown,
as in the Colab copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .notebooks import ROOT, read_notebook

WEB = ROOT / ".cache" / "web" / "node_modules"
ASSETS = ("reveal.js", "mathjax", "requirejs", "jquery")
# The decks draw no diagrams; this stands in for nbconvert's mermaid module, which it links from a CDN.
MERMAID_STUB = "export default { initialize() {} };\n"


def export_slides(out_dir, lectures=ROOT / "lectures", web=WEB) -> list[Path]:
    """Execute each lecture notebook and write `<name>.slides.html` plus an `assets/` folder."""
    from nbclient import NotebookClient
    from nbconvert import SlidesExporter

    web = Path(web)
    missing = [name for name in ASSETS if not (web / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in {web}; run `make browser-tools` "
                                "(npm ci into .cache/web) first")
    out_dir = Path(out_dir)
    assets = out_dir / "assets"
    for name in ASSETS:
        target = assets / name
        if not target.exists():
            ignore = shutil.ignore_patterns("*.map", "test", "examples", "node_modules")
            shutil.copytree(web / name, target, ignore=ignore)
    (assets / "mermaid-stub.mjs").write_text(MERMAID_STUB)
    exporter = SlidesExporter(
        reveal_url_prefix="assets/reveal.js",
        mathjax_url="assets/mathjax/es5/tex-chtml-full.js?config=TeX-AMS_CHTML-full",
        require_js_url="assets/requirejs/require.js",
        jquery_url="assets/jquery/dist/jquery.min.js",
        mermaid_js_url="assets/mermaid-stub.mjs",
        exclude_input_prompt=True, exclude_output_prompt=True,
    )
    from .colab import citations, colab_copy, labels

    root = Path(lectures).parent
    known_labels, known_citations = labels(root), citations(root / "references.bib")
    written = []
    for path in sorted(Path(lectures).glob("*.ipynb")):
        # Reveal.js, like Colab, does not read MyST: the deck gets the Colab copy's plain markdown.
        nb = colab_copy(read_notebook(path), path.relative_to(root).as_posix(), known_labels, known_citations)
        # Execute first, so the live demos' outputs are on the slides.
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        body, _ = exporter.from_notebook_node(nb)
        target = out_dir / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written
