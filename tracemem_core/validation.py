"""Argument checks shared by every service, so every door gives the same error for the same input."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tracemem_core.errors import InvalidArgument

MISSING: Any = object()


def first_present(arguments: dict[str, Any], name: str, *aliases: str) -> Any:
    """The argument ``name``, else the compatibility alias the caller sent (docs/contract/tools.md italics).

    Sending a name and its alias with different values is refused: silently keeping one of them
    would drop what the caller meant by the other.
    """
    given = [(key, arguments[key]) for key in (name, *aliases) if arguments.get(key) is not None]
    for key, value in given[1:]:
        if value != given[0][1]:
            raise InvalidArgument(
                f"{given[0][0]} and {key} are the same argument (one is an alias) with different values; "
                "send only one",
                field=name,
            )
    return given[0][1] if given else None


def required(value: Any, field: str) -> Any:
    if value is None or value is MISSING:
        raise InvalidArgument(f"{field} is required", field=field)
    return value


def string(value: Any, field: str, *, max_length: int = 200, allow_empty: bool = False) -> str:
    required(value, field)
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string, got {type(value).__name__}", field=field)
    storable(value, field)
    if not allow_empty and not value.strip():
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidArgument(
            f"{field} must be at most {max_length} characters, got {len(value)}", field=field
        )
    return value


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str, field: str, *, where: str | None = None) -> str:
    """Refuse text PostgreSQL cannot hold (nor look up by): U+0000 and unpaired UTF-16 surrogates
    (JSON allows "\\ud800"; UTF-8 does not). Names the field instead of failing with a database error."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        what = (
            "a NUL character (\\u0000)"
            if found.group() == "\x00"
            else "an unpaired surrogate (\\ud800-\\udfff)"
        )
        raise InvalidArgument(
            f"{where or field} contains {what}, which cannot be stored; remove it", field=field
        )
    return value


def optional_string(value: Any, field: str, *, max_length: int = 200) -> str | None:
    if value is None or value is MISSING:
        return None
    return string(value, field, max_length=max_length, allow_empty=True)


def optional_bool(value: Any, field: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidArgument(f"{field} must be true or false", field=field)
    return value


def optional_seconds(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer number of seconds", field=field)
    return value


def json_object(value: Any, field: str, *, allow_empty: bool = True) -> dict[str, Any]:
    required(value, field)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object, got {_json_type(value)}", field=field)
    if not allow_empty and not value:
        raise InvalidArgument(f"{field} must be a non-empty object", field=field)
    return value


def optional_json_object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None or value is MISSING:
        return None
    return json_object(value, field)


def choice(value: Any, field: str, allowed: Iterable[str]) -> str:
    options = list(allowed)
    required(value, field)
    if not isinstance(value, str) or value not in options:
        raise InvalidArgument(
            f"{field} must be one of {', '.join(options)}; got {value!r}",
            field=field,
            details={"allowed": options},
        )
    return value


def bounded_int(value: Any, field: str, *, minimum: int, maximum: int | None, default: int) -> int:
    """An optional integer within bounds. A string of digits counts (REST query strings carry
    numbers as text); anything else, including ``1.5`` and ``true``, is refused naming the field."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        value = int(value)
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be an integer {bounds}; got {value!r}", field=field)
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidArgument(f"{field} must be an integer {bounds}; got {value}", field=field)
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return type(value).__name__


def future_instant(value: datetime | None, field: str) -> datetime | None:
    """An optional expiry: timezone-aware, in the future, and stored in UTC.

    PostgreSQL refuses UTC offsets beyond ±15:59 that ISO-8601 parsers accept, and converting a
    date at the calendar's edge to UTC can overflow; both are the caller's input, so both are
    ``invalid_argument`` naming the field, never a database error.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidArgument(f"{field} must carry a time zone, e.g. 2030-01-01T00:00:00Z", field=field)
    try:
        instant = value.astimezone(UTC)
    except OverflowError:
        raise InvalidArgument(f"{field} is beyond the year 9999", field=field) from None
    if instant <= datetime.now(UTC):
        raise InvalidArgument(f"{field} must be in the future", field=field)
    return instant
