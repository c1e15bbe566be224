"""Source checks on the book's notebooks that `make lint` runs (`python -m traindeep notebooks check`).

* Control characters: a Python "\\r" or "\\f" in a string, or a stray one in markdown,
  silently eats maths such as `\\rVert` or `\\frac`.
* Seeding: every random draw goes through `traindeep.seed_everything`, `shifted`, `rng` or
  `generator`, so that `make verify` can move every draw with TRAINDEEP_SEED_OFFSET. A bare
  `torch.manual_seed(0)` or `np.random.default_rng(0)` would stay fixed at every offset.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .notebooks import ROOT, read_notebook

CHECKED_FOLDERS = ("book", "lectures", "solutions")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")
DIRECT_SEEDING = re.compile(r"torch\.Generator\(\)\.manual_seed\(|np\.random\.default_rng\(|np\.random\.seed\("
                            r"|torch\.manual_seed\((?!traindeep\.shifted\()")


def _code(source: str) -> str:
    """The cell's Python, without IPython's magics and shell lines."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def control_characters(source: str, cell_type: str) -> bool:
    """True when the cell, or a string literal its code builds, holds a control character."""
    if CONTROL.search(source):
        return True
    if cell_type != "code":
        return False
    try:
        tree = ast.parse(_code(source))
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Constant) and isinstance(node.value, str) and CONTROL.search(node.value)
               for node in ast.walk(tree))


def direct_seeding(source: str) -> list[str]:
    """Calls that seed a generator without the seed offset, outside string literals and comments."""
    try:
        tree = ast.parse(_code(source))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            text = ast.unparse(node)
            match = DIRECT_SEEDING.match(text)
            if match:
                found.append(text if len(text) < 60 else text[:57] + "...")
    return found


def source_problems(root=ROOT) -> list[str]:
    """Every control character and offset-blind seeding call in the book's notebooks."""
    root = Path(root)
    problems = []
    for folder in CHECKED_FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            relative = path.relative_to(root).as_posix()
            for cell in read_notebook(path).cells:
                where = f"{relative} cell {cell.get('id', '?')}"
                if control_characters(cell.source, cell.cell_type):
                    problems.append(f"{where}: a control character (a raw string r'...' or an escaped "
                                    "backslash is missing)")
                if cell.cell_type == "code" and "answer" not in cell.metadata.get("tags", []):
                    for call in direct_seeding(cell.source):
                        problems.append(f"{where}: {call} ignores the seed offset; use traindeep.generator(s), "
                                        "traindeep.rng(s) or torch.manual_seed(traindeep.shifted(s))")
    return problems
