"""JSON text already written, carried in a response as it is (issue 17).

A trace page's events are written by PostgreSQL (``decisions.selectors.trace_page_json``); the REST
renderer (``tracemem_site.renderers``) and the MCP fast path (``tracemem_site.mcp``, inside
:func:`passthrough`) embed the bytes without parsing them, and whatever needs the value instead (an
indented answer, DRF's own renderer) gets it from :meth:`RawJSON.value`.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from typing import Any

import orjson


class RawJSON:
    """One JSON value as UTF-8 text."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text

    def value(self) -> Any:
        return json.loads(self.text)  # json, not orjson: integers of any size stay integers


_passthrough: ContextVar[bool] = ContextVar("rawjson_passthrough", default=False)


class _Passthrough:
    # A class, not @contextmanager: half the calls, on every MCP tool call (docs/performance.md §25).
    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = _passthrough.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _passthrough.reset(self.token)


def passthrough() -> _Passthrough:
    """Inside: the caller writes a :class:`RawJSON` in a result as it is (the MCP fast path)."""
    return _Passthrough()


def passthrough_wanted() -> bool:
    return _passthrough.get()


def holds_raw(data: Any) -> bool:
    """Whether a dict result has a :class:`RawJSON` among its values."""
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, RawJSON):
                return True
    return False


_LINE_SEPARATORS = re.compile(b"\xe2\x80[\xa8\xa9]")


def escape_line_separators(text: bytes) -> bytes:
    """UTF-8 JSON text with U+2028 and U+2029 written as ``\\u2028`` and ``\\u2029``, as DRF's
    ``JSONRenderer`` writes them (JavaScript before ES2019 took them for line ends).

    Both are encoded ``E2 80 A8`` / ``E2 80 A9``, so a text with no ``A8`` and no ``A9`` byte at all
    has neither: two single-byte scans (memchr) answer that for most texts, where searching for the
    three-byte sequences took ~1 ms for a 1,000-event trace page (docs/performance.md, section 18).
    """
    if (b"\xa8" in text or b"\xa9" in text) and _LINE_SEPARATORS.search(text):
        return text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return text


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON (orjson), each :class:`RawJSON` embedded as it is."""
    return orjson.dumps(data, default=_fragment)


def _fragment(value: Any) -> Any:
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.text)
    raise TypeError


def plain(data: Any) -> Any:
    """``data`` with every :class:`RawJSON` inside dicts and lists replaced by its value."""
    if isinstance(data, RawJSON):
        return data.value()
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [plain(v) for v in data]
    return data
