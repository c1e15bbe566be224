"""The explorers' face in the rendered book: a self-contained HTML element that replays a precomputed grid.

A page of the book has no kernel. At build time the notebook computes the explorer over a grid of
its controls; `static_explorer` turns that grid into one HTML element: the data as JSON, the
drawing code (`explorer.js`, plain JavaScript and SVG) inlined, nothing fetched from elsewhere.
Choosing a value redraws the panels from the grid; values off the grid are not offered.
"""
from __future__ import annotations

import html
import itertools
import json
import math
import uuid
from pathlib import Path

SCRIPT = Path(__file__).with_name("explorer.js")
MAX_BYTES = 1_000_000


def _rounded(values) -> list:
    """Four significant digits keep the JSON small; NaN and infinities become null."""
    out = []
    for v in values:
        v = float(v)
        out.append(float(f"{v:.4g}") if math.isfinite(v) else None)
    return out


def static_explorer(controls: list[tuple[str, str, list, object]], panels: list[dict], compute,
                    caption: str) -> str:
    """The HTML of a precomputed explorer.

    `controls`: (name, label, values, initial value) for each control. `panels`: dicts with
    `title`, `xlabel`, `ylabel`, `logy`, `colour` and optionally `ylim` ([low, high]), and `xmax`
    with `dx` (the x-axis runs from 0 to `xmax` and point i sits at (i + 0.5) dx: a curve of
    averages over windows of dx steps, which a diverged run leaves short). `compute(**setting)`
    returns one entry per panel: a sequence of y-values (x is 1, 2, ...); for a panel of
    `"kind": "xy"` (with `xlim`, `ylim` and optional `background` polylines, each a flat
    [x0, y0, x1, y1, ...] list) a flat sequence of points x0, y0, x1, y1, ...; for `"kind": "text"`
    a line of text. Every combination of the controls' values is computed.
    """
    grid = {}
    for indices in itertools.product(*(range(len(values)) for _, _, values, _ in controls)):
        setting = {name: values[i] for (name, _, values, _), i in zip(controls, indices)}
        outputs = compute(**setting)
        if len(outputs) != len(panels):
            raise ValueError(f"compute returned {len(outputs)} outputs for {len(panels)} panels at {setting}")
        grid["|".join(map(str, indices))] = [str(out) if panel.get("kind") == "text" else _rounded(out)
                                             for panel, out in zip(panels, outputs)]
    spec = {"controls": [{"name": n, "label": label, "values": list(values), "value": value}
                         for n, label, values, value in controls],
            "panels": panels, "runs": grid}
    data = json.dumps(spec, separators=(",", ":"), allow_nan=False)
    element_id = "td-explorer-" + uuid.uuid4().hex[:8]
    page = (f'<div class="td-explorer" id="{element_id}" style="font-family: sans-serif; font-size: 12px">'
            f'<div class="td-controls" style="display: flex; gap: 12px; flex-wrap: wrap"></div>'
            f'<div class="td-title" style="margin: 4px 0; font-weight: bold"></div>'
            f'<div class="td-panels" style="display: flex; gap: 8px; flex-wrap: wrap"></div>'
            f'<div class="td-note" style="margin: 2px 0"></div>'
            f'<p class="td-caption" style="font-size: 11px; color: #555">{html.escape(caption)}</p>'
            f'<script type="application/json">{data.replace("</", "<" + chr(92) + "/")}</script>'
            f'<script>{SCRIPT.read_text(encoding="utf-8")}\n'
            f'(function () {{ const root = document.getElementById("{element_id}");'
            f' tdExplorer(root, JSON.parse(root.querySelector(\'script[type="application/json"]\').textContent));'
            f' }})();</script></div>')
    if len(page.encode("utf-8")) > MAX_BYTES:
        raise ValueError(f"the precomputed explorer is {len(page) / 1e6:.1f} MB; keep it under 1 MB "
                         "(fewer control values)")
    return page
