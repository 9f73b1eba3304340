"""Reading JSON the app did not write itself (annotations, sessions, run folders, benchmark files,
model headers): one rule for JSON nested too deeply to read.

Python's reader gives up on brackets thousands of levels deep with a ``RecursionError``, not a
``JSONDecodeError``; every reader then needed a second ``except`` and its own wording. :func:`loads`
turns it into :class:`NestedTooDeep`, a ``JSONDecodeError`` (so a ``ValueError``) whose text is just
"nested too deeply": what already catches bad JSON catches it too.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NestedTooDeep", "loads"]


class NestedTooDeep(json.JSONDecodeError):
    """JSON nested too deeply for Python's reader to follow."""

    def __init__(self) -> None:
        super().__init__("nested too deeply", "", 0)

    def __str__(self) -> str:
        return self.msg


def loads(text: str | bytes) -> Any:
    """``json.loads``; JSON nested too deeply raises :class:`NestedTooDeep`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise NestedTooDeep() from None
