"""Export the lecture decks to reveal.js HTML that works offline.

nbconvert's slides template loads reveal.js, MathJax and require.js from CDNs;
here all three come from the npm folder `.cache/web` (see the Makefile's
`browser-tools` target) and are copied next to the slides.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .notebooks import ROOT, read_notebook

WEB = ROOT / ".cache" / "web" / "node_modules"
ASSETS = {"reveal.js": WEB / "reveal.js", "mathjax": WEB / "mathjax", "requirejs": WEB / "requirejs"}


def export_slides(out_dir, lectures=ROOT / "lectures", web=WEB) -> list[Path]:
    """Write one `<name>.slides.html` per lecture notebook plus an `assets/` folder."""
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
    exporter = SlidesExporter(
        reveal_url_prefix="assets/reveal.js",
        mathjax_url="assets/mathjax/es5/tex-chtml-full.js?config=TeX-AMS_CHTML-full",
        require_js_url="assets/requirejs/require.js",
        exclude_input_prompt=True, exclude_output_prompt=True,
    )
    written = []
    for path in sorted(Path(lectures).glob("*.ipynb")):
        body, _ = exporter.from_notebook_node(read_notebook(path))
        target = out_dir / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written
