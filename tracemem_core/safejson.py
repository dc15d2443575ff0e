"""Bounded loading of JSON (and YAML) for every place it enters the server.

Python's ``json`` and PyYAML's composer recurse once per level and raise ``RecursionError`` near
depth 1000 (lower when the stack is already deep), which no door expects. The nesting is measured
*before* building anything, in linear time and without recursion, and anything deeper than
``TRACEMEM_MAX_JSON_DEPTH`` (default 64, at most :data:`MAX_DEPTH_CEILING`) is refused. Nothing
TraceMem stores needs more: redaction keeps 10 levels.

Who uses what: the REST/MCP parser (``tracemem_site.parsers``) and every form or view that parses
JSON text call :func:`loads`; Django admin forms get :class:`JSONFormField` for every model
``JSONField`` (:data:`ADMIN_FORMFIELD_OVERRIDES`); ``apply_config`` reads its file with
:func:`load_yaml`; the offline verifier uses the same check (``tracemem_verify.jsondepth``) with
its default limit.
"""

from __future__ import annotations

from typing import Any

import yaml
from django import forms
from django.conf import settings
from django.db import models

from tracemem_verify.jsondepth import (
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_CEILING,
    JSONTooDeep,
    nesting_exceeds,
)
from tracemem_verify.jsondepth import loads as _bounded_loads

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_CEILING",
    "JSONTooDeep",
    "nesting_exceeds",
    "max_depth",
    "loads",
    "load_yaml",
    "JSONFormField",
    "ADMIN_FORMFIELD_OVERRIDES",
]


def max_depth() -> int:
    return int(getattr(settings, "TRACEMEM_MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH))


def loads(text: str, *, limit: int | None = None) -> Any:
    """``json.loads`` refusing NaN/Infinity and anything nested deeper than the limit.

    Raises ``ValueError`` (``JSONTooDeep`` for nesting, ``json.JSONDecodeError`` otherwise).
    """
    return _bounded_loads(text, limit=max_depth() if limit is None else limit)


_OPENS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSES = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def load_yaml(text: str, *, limit: int | None = None) -> Any:
    """``yaml.safe_load`` refusing documents nested deeper than the limit (``JSONTooDeep``, worded
    for YAML). PyYAML's event parser is iterative, so the depth is counted on its events first and
    the recursive composer only ever sees bounded documents. Raises ``yaml.YAMLError`` otherwise."""
    bound = max_depth() if limit is None else limit
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, _OPENS):
            depth += 1
            if depth > bound:
                raise JSONTooDeep(bound, what="the YAML document")
        elif isinstance(event, _CLOSES):
            depth -= 1
    return yaml.safe_load(text)


class JSONFormField(forms.JSONField):
    """Django's form ``JSONField`` with the nesting limit: a deeper value is a form error naming the
    limit, where the stock field lets ``RecursionError`` escape as a server error."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and not self.disabled:
            limit = max_depth()
            if nesting_exceeds(value, limit):
                raise forms.ValidationError(str(JSONTooDeep(limit, what="this value")), code="invalid")
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        # Redisplaying the refused text must not parse it either.
        if isinstance(data, str) and nesting_exceeds(data, max_depth()):
            return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)


# For every ModelAdmin with a model JSONField (tracemem_site.admin_perms.GuardedAdmin and the
# read-only admins apply it); tests/site/test_json_depth.py checks every registered admin.
ADMIN_FORMFIELD_OVERRIDES: dict[Any, dict[str, Any]] = {models.JSONField: {"form_class": JSONFormField}}
