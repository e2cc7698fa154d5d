"""Take the code out of a model's response: the one rule used for ranking and for training.

Rule, in order:
  1. the first fenced block whose info string is python (```python, ```py, ```python3, any case);
  2. else the first fenced block of any (or no) language;
  3. else the raw text, cut at the earliest stop marker (the prompt template's markers such as
     "\n### Instruction" or an end-of-text token).
A fence opens with ``` at the start of a line (indentation allowed) and closes with a line that
is only ``` (plus whitespace). An opening fence that never closes takes the rest of the text,
itself cut at the stop markers (a truncated generation). Line endings are normalised to "\n".
The result has trailing whitespace removed and ends with one newline (empty stays empty).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from megatron_rrtf.generation.stops import cut_at_stop

_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*$", re.MULTILINE)
_FENCE_CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}

def _fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language tag lower-cased, body, closed) for each fenced block, in order."""
    blocks = []
    pos = 0
    while True:
        m = _FENCE_OPEN.search(text, pos)
        if not m:
            return blocks
        body_start = m.end() + 1
        close = _FENCE_CLOSE.search(text, body_start) if body_start <= len(text) else None
        if close is None:
            blocks.append((m.group(1).lower(), text[body_start:], False))
            return blocks
        blocks.append((m.group(1).lower(), text[body_start:close.start()], True))
        pos = close.end()


def _finish(code: str) -> str:
    code = code.rstrip()
    return code + "\n" if code else ""


def extract_code(response: str, stop_markers: Sequence[str]) -> str:
    """The code in `response` by the module's rule; `stop_markers` is rrtf.stop_markers (its
    default is config.rrtf.STOP_MARKERS)."""
    text = response.replace("\r\n", "\n").replace("\r", "\n")
    # A fence that opens after a stop marker belongs to text the model should not have written.
    blocks = _fenced_blocks(cut_at_stop(text, stop_markers) + "\n")
    for tag, body, closed in blocks:
        if tag in _PYTHON_TAGS:
            return _finish(body if closed else cut_at_stop(body, stop_markers))
    if blocks:
        _, body, closed = blocks[0]
        return _finish(body if closed else cut_at_stop(body, stop_markers))
    return _finish(cut_at_stop(text, stop_markers))
