"""JSON parsing with a nesting limit, for every door that parses JSON a caller sent.

Python's ``json`` recurses once per level and raises ``RecursionError`` near depth 1000 (lower when
the stack is already deep), which no door expects. The nesting is therefore measured *before*
parsing, in linear time and without recursion, and anything deeper than
``TRACEMEM_MAX_JSON_DEPTH`` (default 64, at most :data:`MAX_DEPTH_CEILING`) is refused. Brackets
inside strings do not count. Nothing TraceMem stores needs more: redaction keeps 10 levels.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from django.conf import settings

DEFAULT_MAX_DEPTH = 64
# Far below Python's recursion limit even when the parse happens deep inside a request's stack.
MAX_DEPTH_CEILING = 200

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON is nested deeper than {limit} levels; send flatter data")
        self.limit = limit


def max_depth() -> int:
    return int(getattr(settings, "TRACEMEM_MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH))


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text opens more than ``limit`` arrays/objects inside one another."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to be that deep, no scan needed
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0) > limit


def loads(text: str, *, limit: int | None = None) -> Any:
    """``json.loads`` refusing NaN/Infinity and anything nested deeper than the limit.

    Raises ``ValueError`` (``JSONTooDeep`` for nesting, ``json.JSONDecodeError`` otherwise).
    """
    bound = max_depth() if limit is None else limit
    if nesting_exceeds(text, bound):
        raise JSONTooDeep(bound)
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
