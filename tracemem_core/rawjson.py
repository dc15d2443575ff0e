"""JSON text already written, carried in a response as it is (issue 17).

A trace page's events are written by PostgreSQL (``decisions.selectors.trace_page_json``); the REST
renderer (``tracemem_site.renderers``) embeds the bytes without parsing them, and whatever needs the
value instead (an indented answer, DRF's own renderer) gets it from :meth:`RawJSON.value`.
"""

from __future__ import annotations

import json
from typing import Any


class RawJSON:
    """One JSON value as UTF-8 text."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text

    def value(self) -> Any:
        return json.loads(self.text)  # json, not orjson: integers of any size stay integers


def plain(data: Any) -> Any:
    """``data`` with every :class:`RawJSON` inside dicts and lists replaced by its value."""
    if isinstance(data, RawJSON):
        return data.value()
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [plain(v) for v in data]
    return data
