"""JSON nesting limits, measured before parsing (pure Python: the server and the offline verifier
share it; the server's limit comes from settings through ``tracemem_core.safejson``).

Python's ``json`` recurses once per level and raises ``RecursionError`` near depth 1000 (lower when
the stack is already deep), which no caller expects. The nesting is therefore measured *before*
parsing, in linear time and without recursion. Brackets inside strings do not count.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import IO, Any

DEFAULT_MAX_DEPTH = 64
# Far below Python's recursion limit even when the parse happens deep inside a request's stack.
MAX_DEPTH_CEILING = 200

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    def __init__(self, limit: int, what: str = "JSON") -> None:
        super().__init__(f"{what} is nested deeper than {limit} levels; send flatter data")
        self.limit = limit


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text opens more than ``limit`` arrays/objects inside one another."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to be that deep, no scan needed
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0) > limit


def loads(text: str, *, limit: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` refusing NaN/Infinity and anything nested deeper than ``limit``.

    Raises ``ValueError`` (``JSONTooDeep`` for nesting, ``json.JSONDecodeError`` otherwise).
    """
    if nesting_exceeds(text, limit):
        raise JSONTooDeep(limit)
    return json.loads(text, parse_constant=_reject_constant)


def load(handle: IO[str], *, limit: int = DEFAULT_MAX_DEPTH) -> Any:
    """:func:`loads` of a file's text."""
    return loads(handle.read(), limit=limit)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
