"""Open the built book in headless Chromium and check what a reader sees.

Run after `jupyter-book build` (the Makefile's `test` target does). The built
pages load MathJax, require.js and the widget renderer from CDNs, which this
machine cannot reach; a copy of the site gets them from the npm folder
`.cache/web` instead. An injected script waits for MathJax and writes a JSON
report into the page, which `chromium --dump-dom` hands back.
"""

import functools
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from traindeep.course.notebooks import colab_url

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
WEB = ROOT / ".cache" / "web" / "node_modules"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

LOCAL_COPIES = {  # pattern of a CDN URL -> file under .cache/web/node_modules
    r"https://[^\"']*/mathjax@3/es5/tex-mml-chtml\.js": "mathjax/es5/tex-mml-chtml.js",
    r"https://[^\"']*/require\.js/[\d.]+/require\.min\.js": "requirejs/require.js",
    r"https://[^\"']*/@jupyter-widgets/html-manager@[\d.]+/dist/embed-amd\.js":
        "@jupyter-widgets/html-manager/dist/embed-amd.js",
}

REPORT_SCRIPT = """
<script>
document.addEventListener("DOMContentLoaded", async () => {
  // Move every control of every precomputed explorer: did the figure change, and how long did the redraw take?
  // Measured first and synchronously: after an await, headless Chromium's virtual time stops the clock,
  // and every redraw would read 0 ms.
  const content = document.querySelector("main") || document.body;
  const explorers = [...content.querySelectorAll(".td-explorer")].map(root => [...root.querySelectorAll("select")].map(
      select => {
    const paths = () => [...root.querySelectorAll("path.td-line")].map(p => p.getAttribute("d")).join(" ");
    const before = paths();
    select.value = String((Number(select.value) + 1) % select.options.length);
    select.dispatchEvent(new Event("change"));
    return {name: select.name, changed: paths() !== before, ms: Number(root.dataset.redrawMs)};
  }));
  // Wait for MathJax to load and finish typesetting (it loads asynchronously).
  for (let i = 0; i < 200 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++) {
    await new Promise(r => setTimeout(r, 50));
  }
  const report = {mathjax: typeof MathJax !== "undefined" && !!MathJax.startup};
  try { await MathJax.startup.promise; } catch (e) { report.mathjaxError = String(e); }
  await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(r => { img.onload = img.onerror = r; })));
  const main = document.querySelector("main") || document.body;
  report.typeset = main.querySelectorAll("mjx-container").length;
  report.rawTex = (main.innerText.match(/\\$\\$|\\\\frac|\\\\prod/g) || []).length;
  report.images = [...main.querySelectorAll(".cell_output img")].map(
      img => ({src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0}));
  report.snapshot = [...main.querySelectorAll(".tag_widget-snapshot .cell_output img")].map(
      img => img.complete && img.naturalWidth > 100);
  report.colab = [...document.querySelectorAll("a[href*='colab.research.google.com']")].map(a => a.href);
  report.stubs = (main.innerText.match(/YOUR CODE HERE/g) || []).length;
  report.solutionMarkers = (main.innerText.match(/BEGIN SOLUTION|END SOLUTION/g) || []).length;
  report.errors = [...main.querySelectorAll(".output.traceback, .cell_output .error")].length;
  report.explorers = explorers;
  const pre = document.createElement("pre");
  pre.id = "page-report";
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def site():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: run `make browser-tools` (Debian package chromium)")
    if not (HTML / "book" / "01_why_training_fails.html").exists():
        pytest.fail(f"{HTML} has no built book: run `make book` first")
    if not (WEB / "mathjax").is_dir():
        pytest.fail(f"{WEB} lacks mathjax: run `make browser-tools` (npm ci into .cache/web)")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "html"
        shutil.copytree(HTML, copy)
        shutil.copytree(WEB, copy / "_offline", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.map", "*.ts", "test", "docs"))
        for page in copy.rglob("*.html"):
            text = page.read_text(encoding="utf-8")
            for pattern, local in LOCAL_COPIES.items():
                text = re.sub(pattern, "/_offline/" + local, text)
            text = re.sub(r'\s(integrity|crossorigin)="[^"]*"', "", text)  # hashes of the CDN files
            page.write_text(text.replace("</body>", REPORT_SCRIPT + "</body>"), encoding="utf-8")
        handler = functools.partial(QuietHandler, directory=str(copy))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def page_report(url: str) -> dict:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}",
             # Nothing outside localhost: CDN fonts and badges would otherwise stall the page.
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=20000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="page-report"[^>]*>(.*?)</pre>', result.stdout, re.S)
    assert match, (f"no report from {url} (dumped {len(result.stdout)} chars, rc {result.returncode}); "
                   f"chromium said: {result.stderr[-1500:]}")
    return json.loads(match.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.fixture(scope="module")
def chapter1(site):
    return page_report(site + "/book/01_why_training_fails.html")


def test_maths_is_typeset(chapter1):
    assert chapter1["mathjax"], "MathJax did not load"
    assert chapter1["typeset"] >= 5, chapter1
    assert chapter1["rawTex"] == 0, "raw TeX is visible on the page"


def test_figures_show(chapter1):
    images = chapter1["images"]
    assert len(images) >= 7, images
    broken = [i["src"] for i in images if not i["ok"]]
    assert not broken, f"images that did not load: {broken}"
    assert chapter1["errors"] == 0


def test_the_signal_explorer_is_live_on_the_page(chapter1):
    """Without a kernel, every control of the explorer redraws its figure from the precomputed grid."""
    (controls,) = chapter1["explorers"]
    assert [c["name"] for c in controls] == ["depth", "activation", "init", "scale"]
    assert all(c["changed"] for c in controls), controls
    assert all(0 < c["ms"] <= 100 for c in controls), controls  # 0 would mean the clock did not run


def test_the_learning_rate_explorer_is_live_on_the_page(site):
    """Chapter 8's explorer: each control redraws the valley path and the network's curves from the grid."""
    (controls,) = page_report(site + "/book/08_learning_rate.html")["explorers"]
    assert [c["name"] for c in controls] == ["optimizer", "lr", "beta", "schedule"]
    assert all(c["changed"] for c in controls), controls
    assert all(0 < c["ms"] <= 100 for c in controls), controls  # 0 would mean the clock did not run


def test_colab_links_point_at_the_notebook(chapter1):
    expected = colab_url("book/01_why_training_fails.ipynb")
    assert expected in chapter1["colab"], chapter1["colab"]
    assert all(link == expected or link.endswith("colab-badge.svg") for link in chapter1["colab"])


PAGES = sorted(p.relative_to(ROOT).with_suffix("").as_posix()
               for folder in ("book", "lectures") for p in (ROOT / folder).glob("*.ipynb"))
LABS = sorted(p.stem for p in (ROOT / "labs").glob("*.ipynb"))


@pytest.mark.parametrize("page", PAGES)
def test_every_chapter_and_deck_shows_maths_figures_and_no_traceback(site, page):
    report = page_report(f"{site}/{page}.html")
    assert report["mathjax"] and report["typeset"] >= 2 and report["rawTex"] == 0, report
    broken = [i["src"] for i in report["images"] if not i["ok"]]
    assert len(report["images"]) >= (2 if page.startswith("book/") else 1) and not broken, report["images"]
    assert report["errors"] == 0, "a cell shows a traceback"
    assert colab_url(f"{page}.ipynb") in report["colab"]


def test_lecture_page_renders(site):
    report = page_report(site + "/lectures/01_why_training_fails.html")
    assert report["typeset"] >= 2 and report["images"] and all(i["ok"] for i in report["images"])
    assert colab_url("lectures/01_why_training_fails.ipynb") in report["colab"]


@pytest.mark.parametrize("lab", LABS)
def test_lab_pages_are_unexecuted_stubs_with_colab_links(site, lab):
    report = page_report(f"{site}/labs/{lab}.html")
    assert colab_url(f"labs/{lab}.ipynb") in report["colab"]
    assert report["stubs"] >= 4 and report["solutionMarkers"] == 0
    assert report["images"] == [] and report["errors"] == 0, "a lab page shows outputs"
    assert report["rawTex"] == 0


def test_solutions_are_never_published():
    assert HTML.is_dir()
    assert not (HTML / "solutions").exists() and not (HTML / "_sources" / "solutions").exists()
    leaked = [p.name for p in HTML.rglob("*.html") if "BEGIN SOLUTION" in p.read_text(encoding="utf-8")]
    assert leaked == []


def test_colab_copies_link_only_to_pages_of_the_built_site(tmp_path):
    """What a badge opens has no MyST markup, and each of its links into the book lands on a built page."""
    from traindeep.course import colab
    from traindeep.course.notebooks import site_url

    site = site_url()
    checked = 0
    for path in colab.write_copies(tmp_path):
        nb = colab.nbformat.read(path, as_version=4)
        assert colab.myst_leftovers(nb) == [], path
        for cell in nb.cells:
            for link in re.findall(r"\]\((" + re.escape(site) + r"[^)\s]*)\)", cell.source):
                page, _, anchor = link[len(site):].partition("#")
                built = HTML / (page or "index.html")
                assert built.is_file(), f"{path.name}: {link} has no page in the built site"
                if anchor:
                    assert f'id="{anchor}"' in built.read_text(encoding="utf-8"), f"{path.name}: no #{anchor}"
                checked += 1
    assert checked >= 5, "the copies should link to the book (citations, cross-references)"
