"""What a notebook front end receives when an explorer is displayed: all three faces at once.

Jupyter and Colab render the live widget; the rendered book (no kernel) the precomputed HTML;
anything else the PNG snapshot.
"""

from __future__ import annotations

import base64


def live_widget(explorer, controls: dict):
    """The live face: `controls` ({parameter: ipywidget}) laid out two per row above one output that
    shows `explorer.update(**values)`'s figure (its `png()`) each time a control moves."""
    import ipywidgets as w
    from IPython.display import Image, display

    def redraw(**params):
        explorer.update(**params)
        display(Image(explorer.png()))

    output = w.interactive_output(redraw, controls)
    values = list(controls.values())
    return w.VBox([w.HBox(values[i:i + 2]) for i in range(0, len(values), 2)] + [output])


def explorer_bundle(explorer, text: str, include=None, exclude=None) -> dict:
    """The MIME bundle of an explorer with `png()`, `static_html()` and a `widget` property."""
    bundle = {"image/png": base64.b64encode(explorer.png()).decode("ascii"), "text/html": explorer.static_html()}
    try:
        bundle.update(widget_bundle(explorer.widget, include, exclude))
    except Exception:  # no ipywidgets, or one we cannot display: the snapshot and the page alone
        pass
    bundle["text/plain"] = text
    return bundle


def widget_bundle(widget, include=None, exclude=None) -> dict:
    """The widget's MIME bundle in ipywidgets 8 (`_repr_mimebundle_`) and 7 (which Colab ships and
    which displays widgets through `_ipython_display_` only: its view bundle is built here)."""
    if hasattr(widget, "_repr_mimebundle_"):
        return widget._repr_mimebundle_(include=include, exclude=exclude) or {}
    return {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                        "model_id": widget.model_id}}
