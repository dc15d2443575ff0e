"""The bounded JSON parser used by every door that parses JSON (REST and MCP).

Kept apart from ``tracemem_site.rest``: DRF imports the parser while ``rest_framework.views`` is
still initialising, so this module must not import DRF views.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "invalid_argument"


class BoundedJSONParser(JSONParser):
    """JSON only, strict (no NaN), and never more than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes.

    DRF reads the body as a stream, bypassing Django's own size check, so the limit is enforced
    here for every door that parses JSON (REST and MCP).
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes; send less data per call")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(raw.decode(encoding), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
