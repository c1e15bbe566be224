"""Put in place of a module that a lab forbids, inside a student's grading run (see `sandbox.run(hide=...)`).

Importing it works, so the lab's own helper cell still runs; using anything
from it raises `Withheld`, which says why.
"""


class Withheld(ImportError):
    """A module the lab forbids is not available while grading."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise Withheld(f"{__name__}.{name} is not available while grading: this lab asks you to write it yourself")
