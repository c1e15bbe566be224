"""Finding submissions, naming their students, and reading them without trusting the file system.

Every path that looks like a submission gets a row: symbolic links, folders
named `*.ipynb`, devices and oversized files are refused with a status that
says why, and never followed or read. Student names are printable, free of
path separators, and unique (case-insensitively, since feedback files may land
on a case-insensitive disk); the original file name is kept, escaped, in its
own column. When two submissions would get the same name, neither keeps it:
each gets a suffix drawn from its own path, so no sort order decides who is
who, and a file named after another submission's student is flagged.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 60


@dataclass
class Submission:
    path: Path
    student: str  # sanitized and unique in the batch
    original: str  # the path as given, with unprintable characters escaped
    problem: str | None = None  # why it cannot be graded, when it cannot
    flag: str | None = None  # what a marker should look at (a file named after another student)


def escaped(text: str, limit: int = 300) -> str:
    """`text` with control, format and other unprintable characters written as escapes."""
    out = []
    for ch in str(text)[:limit]:
        if ch in "\n\t" or unicodedata.category(ch)[0] not in "CZ" or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("…" if len(str(text)) > limit else "")


def one_line(text: str, limit: int = 300) -> str:
    """`escaped`, on a single line (statuses, CSV cells, terminal rows)."""
    return escaped(str(text).replace("\r", " ").replace("\n", " ").replace("\t", " "), limit)


def code_span(text: str, limit: int = 300) -> str:
    """`text` on one line, as a Markdown code span that nothing inside it can close."""
    line = one_line(text, limit)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", line)), default=0) + 1)
    pad = " " if not line or line[0] == "`" or line[-1] == "`" else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def sanitized(name: str) -> str:
    """Letters, digits, '.', '_' and '-' only; no leading dots; never empty."""
    name = unicodedata.normalize("NFKC", name)
    name = "".join(ch if (ch.isalnum() and ch.isprintable()) or ch in "._-" else "_" for ch in name)
    name = re.sub(r"_+", "_", name).strip("._-")[:MAX_NAME].strip("._-")
    return name or "submission"


def _candidates(items) -> list[tuple[Path, Path | None]]:
    """(path, the folder given that holds it, or None) for every path that looks like a submission, without
    following links; folders are searched."""
    found = []
    for item in map(Path, items):
        if item.is_dir() and not item.is_symlink() and item.suffix != ".ipynb":
            for folder, dirs, files in os.walk(item, followlinks=False):
                dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints" and not d.startswith("."))
                here = Path(folder)
                # A folder named *.ipynb is not searched: it gets a row saying it is not a file.
                found += [(here / d, item) for d in dirs if d.endswith(".ipynb")]
                dirs[:] = [d for d in dirs if not d.endswith(".ipynb")]
                found += [(here / f, item) for f in sorted(files) if f.endswith(".ipynb")]
        else:
            found.append((item, None))
    return sorted(dict(found).items(), key=lambda pair: str(pair[0]))


def _stem(path: Path) -> str:
    return path.name[:-len(".ipynb")] if path.name.endswith(".ipynb") else path.name


def _student_name(path: Path, root: Path | None, alone: bool) -> str:
    """The student's folder when the file sits alone in a folder below the one given (per-student folders),
    or keeps the lab's name (alice/lab01_x.ipynb); else the file's stem."""
    if root is not None and path.parent != root and alone:
        return path.parent.name
    if _stem(path).startswith(("lab", "coursework")) and path.parent.name:
        return path.parent.name
    return _stem(path)


def collect(items) -> list[Submission]:
    """One Submission per candidate path, names sanitized and unique whatever the order of the paths."""
    candidates = _candidates(items)
    per_folder: dict = {}
    for path, _ in candidates:
        per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
    bases = [sanitized(_student_name(path, root, per_folder[path.parent] == 1)) for path, root in candidates]
    count: dict = {}
    for base in bases:
        count[base.casefold()] = count.get(base.casefold(), 0) + 1
    shared = {i for i, base in enumerate(bases) if count[base.casefold()] > 1}
    names = list(bases)  # a shared one is replaced below, once every unshared name is known
    taken = {n.casefold() for i, n in enumerate(names) if i not in shared}
    for i in sorted(shared):
        digest = hashlib.sha256(str(candidates[i][0]).encode("utf-8", "surrogateescape")).hexdigest()
        size = 6
        while f"{bases[i]}-{digest[:size]}".casefold() in taken:
            size += 2
        names[i] = f"{bases[i][:MAX_NAME - size - 1]}-{digest[:size]}"
        taken.add(names[i].casefold())
    result = []
    final = {n.casefold() for n in names}
    for i, ((path, _), name) in enumerate(zip(candidates, names)):
        flag = None
        stem = sanitized(_stem(path)).casefold()
        if i in shared:
            flag = f"named by path: another submission would also be named {bases[i]}"
        elif stem != name.casefold() and stem in final:
            flag = f"SUSPICIOUS: its file is named {sanitized(_stem(path))}, another submission's student"
        result.append(Submission(path, name, escaped(str(path)), _refusal(path), flag))
    return result


def _refusal(path: Path) -> str | None:
    try:
        info = os.lstat(path)
    except OSError as error:
        return f"not readable: {error.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "refused: a symbolic link (submit the notebook file itself)"
    if stat.S_ISDIR(info.st_mode):
        return "refused: a folder, not a notebook file"
    if not stat.S_ISREG(info.st_mode):
        return "refused: not a regular file"
    if not path.name.endswith(".ipynb"):
        return "not a notebook: expected a .ipynb file"
    return None


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing links and anything but a regular file, and files over `max_bytes`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path.name}: not a regular file")
        if info.st_size > max_bytes:
            raise FileTooLarge(info.st_size)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FileTooLarge(len(data))
        return data
    finally:
        os.close(fd)


class FileTooLarge(OSError):
    def __init__(self, size: int):
        super().__init__(f"{size} bytes")
        self.size = size
