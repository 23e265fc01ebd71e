"""Held-out code prompts for the built-in model's sweeps and parity checks.

``held_out_prompts(files, root, count, chars)``: from held-out files taken in the order
of the SHA-1 of their root-relative path (the same choice on every machine with the same
Python), one prompt per file: the source before its first ``def`` line found after
``chars`` characters, starting at a line boundary at most ``chars`` characters back, and
ending with that ``def`` line and its newline, so that the model continues into a
function body. Windows with a backslash or a non-ASCII character are skipped (the
prompts file format of ``mtpdec sweep --prompts`` reads ``\\n`` as a newline).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mtpdec.train.data import read_text

_DEF = re.compile(r"^[ \t]*def \w+\(.*\):[ \t]*$", re.MULTILINE)


def _opening(text: str, chars: int) -> str | None:
    for match in _DEF.finditer(text, chars):
        start = text.find("\n", max(0, match.start() - chars)) + 1
        window = text[start : match.end() + 1]
        if 0 < start < match.start() and "\\" not in window and window.isascii():
            return window
    return None


def held_out_prompts(files: list[Path], root: Path, count: int = 5, chars: int = 600) -> list[str]:
    """``count`` prompts (see the module docstring), or fewer when the files run out."""
    order = sorted(
        files, key=lambda p: hashlib.sha1(p.relative_to(root).as_posix().encode()).hexdigest()
    )
    out: list[str] = []
    for path in order:
        window = _opening(read_text(path), chars)
        if window is not None:
            out.append(window)
        if len(out) == count:
            break
    return out


def prompts_file_text(prompts: list[str]) -> str:
    """The ``--prompts`` file format: one prompt per line, newlines written as ``\\n``."""
    return "".join(p.replace("\n", "\\n") + "\n" for p in prompts)
