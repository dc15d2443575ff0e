"""The bounded JSON parser used by every door that parses JSON (REST and MCP).

Kept apart from ``tracemem_site.rest``: DRF imports the parser while ``rest_framework.views`` is
still initialising, so this module must not import DRF views.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

from tracemem_core import safejson


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "invalid_argument"


class BodyTooDeep(exceptions.ParseError):
    """JSON nested deeper than ``TRACEMEM_MAX_JSON_DEPTH`` (REST: 400, MCP: JSON-RPC -32700)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is nested deeper than {limit} levels; send flatter data")
        self.limit = limit


class BoundedJSONParser(JSONParser):
    """JSON only, strict (no NaN), never more than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes and never
    nested deeper than ``TRACEMEM_MAX_JSON_DEPTH`` (checked before parsing: tracemem_core/safejson.py).

    DRF reads the body as a stream, bypassing Django's own size check, so the limits are enforced
    here for every door that parses JSON (REST and MCP).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes; send less data per call")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return safejson.loads(raw.decode(encoding))
        except safejson.JSONTooDeep as exc:
            raise BodyTooDeep(exc.limit) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"request body is not valid JSON: {exc}") from None
