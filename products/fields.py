"""Field types of a data product: validating a definition, coercing agent values, rendering rows.

Values are coerced by the declared type with an ``invalid_argument`` that names the field; the
value itself is never echoed back (it may be a secret).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg.types.json import Jsonb

from tracemem_core import safejson
from tracemem_core.errors import InvalidArgument
from tracemem_core.redaction import MAX_DEPTH_MARKER
from tracemem_core.validation import _json_type

FIELD_TYPES = ("string", "integer", "number", "boolean", "date", "datetime", "json", "uuid")
FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Source identifiers are quoted anyway; restricting them keeps definitions boring and reviewable.
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_INT_RE = re.compile(r"^-?\d{1,19}$")
_INT64 = 2**63 - 1


def _bad(field: str, expected: str, value: Any) -> InvalidArgument:
    return InvalidArgument(
        f"field {field} must be {expected}, got {_json_type(value)}; see product_get for the field types",
        field=field,
        details={"expected": expected},
    )


def coerce(field: dict[str, Any], value: Any, vendor: str) -> Any:
    """An agent's JSON value as the Python value to bind for ``field`` on this database vendor."""
    name, kind = field["name"], field["type"]
    if value is None:
        if not field.get("nullable", True):
            raise InvalidArgument(f"field {name} cannot be null", field=name)
        return None
    if kind == "string":
        if not isinstance(value, str):
            raise _bad(name, "a string", value)
        if "\x00" in value:
            raise InvalidArgument(
                f"field {name} contains a NUL character, which databases refuse", field=name
            )
        return value
    if kind == "integer":
        if isinstance(value, bool):
            raise _bad(name, "an integer", value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and _INT_RE.match(value.strip()):
            value = int(value.strip())
        if not isinstance(value, int):
            raise _bad(name, "an integer", value)
        if abs(value) > _INT64:
            raise InvalidArgument(f"field {name} is outside the 64-bit integer range", field=name)
        return value
    if kind == "number":
        if isinstance(value, bool):
            raise _bad(name, "a number", value)
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise _bad(name, "a finite number", value)
            number = Decimal(str(value))
        elif isinstance(value, str):
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                raise _bad(name, "a number", value) from None
            if not number.is_finite():
                raise _bad(name, "a finite number", value)
        else:
            raise _bad(name, "a number", value)
        return number if vendor == "postgresql" else float(number)
    if kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise _bad(name, "a boolean", value)
        return value
    if kind == "date":
        if not isinstance(value, str):
            raise _bad(name, "an ISO-8601 date string (YYYY-MM-DD)", value)
        try:
            parsed_date = dt.date.fromisoformat(value)
        except ValueError:
            raise _bad(name, "an ISO-8601 date string (YYYY-MM-DD)", value) from None
        return parsed_date if vendor == "postgresql" else parsed_date.isoformat()
    if kind == "datetime":
        if not isinstance(value, str):
            raise _bad(name, "an ISO-8601 datetime string", value)
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _bad(name, "an ISO-8601 datetime string", value) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)  # naive times are UTC, as everywhere in TraceMem
        parsed = parsed.astimezone(dt.UTC)
        return parsed if vendor == "postgresql" else parsed.isoformat()
    if kind == "uuid":
        if not isinstance(value, str):
            raise _bad(name, "a UUID string", value)
        try:
            parsed_uuid = uuid.UUID(value)
        except ValueError:
            raise _bad(name, "a UUID string", value) from None
        return parsed_uuid if vendor == "postgresql" else str(parsed_uuid)
    if kind == "json":
        return Jsonb(value) if vendor == "postgresql" else json.dumps(value)
    raise InvalidArgument(f"field {name} has an unknown type {kind}", field=name)


def render(field: dict[str, Any], value: Any) -> Any:
    """A database value as JSON for the agent."""
    if value is None:
        return None
    kind = field["type"]
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        return bool(value)
    if kind == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return str(value)
    if kind == "json":
        if isinstance(value, bytes):
            value = value.decode()
        if not isinstance(value, str):
            return value
        try:
            return safejson.loads(value)
        except safejson.JSONTooDeep:
            # Written by another application, deeper than anything TraceMem parses (a RecursionError
            # otherwise): shown as redaction shows what is too deep.
            return MAX_DEPTH_MARKER
    return str(value)


def validate_definition_fields(raw: Any) -> list[dict[str, Any]]:
    """Admin input for ``fields``: a non-empty list of field objects with safe names and known types."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("fields must be a non-empty list of field objects", field="fields")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"fields[{index}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where} must be an object", field=where)
        name = item.get("name")
        if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
            raise InvalidArgument(
                f"{where}.name must match [a-z][a-z0-9_]* (≤63 chars)", field=f"{where}.name"
            )
        if name in seen:
            raise InvalidArgument(f"field {name} is listed twice", field=f"{where}.name")
        seen.add(name)
        column = item.get("column", name)
        if not isinstance(column, str) or not COLUMN_RE.match(column):
            raise InvalidArgument(
                f"{where}.column must be a plain column name [A-Za-z_][A-Za-z0-9_]*", field=f"{where}.column"
            )
        kind = item.get("type", "string")
        if kind not in FIELD_TYPES:
            raise InvalidArgument(
                f"{where}.type must be one of {', '.join(FIELD_TYPES)}",
                field=f"{where}.type",
                details={"allowed": list(FIELD_TYPES)},
            )
        flags = {}
        for flag, default in (
            ("nullable", True),
            ("primary_key", False),
            ("writable", False),
            ("required", False),
        ):
            value = item.get(flag, default)
            if not isinstance(value, bool):
                raise InvalidArgument(f"{where}.{flag} must be true or false", field=f"{where}.{flag}")
            flags[flag] = value
        out.append({"name": name, "column": column, "type": kind, **flags})
    return out
