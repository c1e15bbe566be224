"""Interactive explorers, each with three faces built from one definition.

Live in Jupyter or Colab (ipywidgets controls, one figure redrawn in place); live without a kernel
in the rendered book (a precomputed grid replayed by plain JavaScript, `static`); and a static
small-multiples figure. ipywidgets is imported only when a live widget is built.
"""
from .bundle import explorer_bundle, widget_bundle
from .lr import LRExplorer, lr_explorer
from .signal import (
                     EXPLORER_ACTIVATIONS,
                     EXPLORER_INITS,
                     SignalExplorer,
                     signal_explorer,
                     signal_grid,
                     signal_profiles,
                     signal_stats,
)
from .static import static_explorer

__all__ = ["EXPLORER_ACTIVATIONS", "EXPLORER_INITS", "LRExplorer", "SignalExplorer", "explorer_bundle", "lr_explorer",
           "signal_explorer", "signal_grid", "signal_profiles", "signal_stats", "static_explorer", "widget_bundle"]
