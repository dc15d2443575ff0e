"""Each operation's input, declared once and checked the same way by every door.

An operation's input is a pydantic model (``<app>/inputs.py``, a subclass of :class:`Input`). The
MCP door publishes its JSON Schema as the tool's ``inputSchema`` and validates ``tools/call``
arguments with it (``tracemem_site/mcp_inputs.py``); the REST door validates the body, path and
query with the same model (``tracemem_site.rest.operation_input``) and documents it in OpenAPI.
Both go through :func:`parse`, so the same bad input gets the same ``invalid_argument`` — same
field, same message — on both doors. Why pydantic and not DRF serializers: docs/inputs.md.

The models check JSON *types* (and fixed enumerations and bounds); everything that needs the
database or a product's definition stays in the services, which every door calls the same way.
Aliases (italics in docs/contract/tools.md, e.g. ``payload`` for ``context``) are resolved here, once.

This module is ground floor: it imports pydantic and the error family, never an app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from tracemem_core.errors import InvalidArgument
from tracemem_core.validation import first_present

__all__ = ["Input", "JsonArray", "JsonObject", "DECIMAL", "DIGITS", "first_present", "parse", "tool_schema"]

InputT = TypeVar("InputT", bound="Input")


class Input(BaseModel):
    """Base of every operation's input model: strict JSON types, no unknown arguments."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)

    # The operation (= MCP tool) name, used in messages ("decision_create does not take ...").
    tool_name: ClassVar[str] = ""

    @classmethod
    def allowed(cls) -> list[str]:
        return sorted(cls.model_fields)


def _digits_to_int(value: Any) -> Any:
    """REST query strings carry numbers as text; ``"20"`` counts as 20 on both doors (as before)."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
        return int(value)
    return value


def _decimal_to_float(value: Any) -> Any:
    """``"2.5"`` in a query string counts as 2.5 (and ``"3"`` as 3.0) on both doors."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,15}(\.[0-9]{1,15})?\s*", value):
        return float(value)
    return value


# A number that may arrive as decimal text (REST query strings), after its bounds.
DECIMAL = BeforeValidator(_decimal_to_float)

# For an integer that may arrive as a string of digits (REST query strings), after its bounds:
# ``Annotated[int, Field(ge=1, le=100), DIGITS]`` (bounds first, or pydantic does not check them).
DIGITS = BeforeValidator(_digits_to_int)


# Any JSON value, typed in the schema (an untyped ``{}`` schema accepts anything and tells the
# agent nothing; the MCP Inspector's --strict lint flags it).
_ANY_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "object", "additionalProperties": True},
        {"type": "array"},
        {"type": "null"},
    ]
}
JsonArray = Annotated[list[Any], WithJsonSchema({"type": "array", "items": _ANY_JSON_SCHEMA})]
JsonObject = dict[str, Any]


# --- one wording for every door ----------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON name of a value's type, as the caller wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def unknown_argument(operation: str, name: str, allowed: list[str]) -> InvalidArgument:
    return InvalidArgument(
        f"{operation} does not take the argument {name!r}; allowed: {', '.join(allowed) or '(none)'}",
        field=name,
        details={"allowed": allowed},
    )


def _bounds(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def _branches(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "anyOf" in schema:
        return [b for s in schema["anyOf"] for b in _branches(s) if b.get("type") != "null"]
    return [schema]


def describe(schema: Mapping[str, Any]) -> str:
    """What a value of ``schema`` is, in words: "a string", "a JSON object", "true or false"..."""
    parts = []
    for branch in _branches(schema):
        kind = branch.get("type")
        if "enum" in branch:
            parts.append("one of " + ", ".join(str(v) for v in branch["enum"]))
        elif kind == "string":
            parts.append("a string")
        elif kind == "object":
            parts.append("a JSON object")
        elif kind == "array":
            items = branch.get("items") or {}
            parts.append("an array of strings" if items.get("type") == "string" else "an array")
        elif kind == "boolean":
            parts.append("true or false")
        elif kind == "integer":
            parts.append("an integer" + _bounds(branch))
        elif kind == "number":
            parts.append("a number" + _bounds(branch))
    if not parts:
        return "a JSON value"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_LEAF_WORDS = {
    "string_type": "a string",
    "dict_type": "a JSON object",
    "list_type": "an array",
    "bool_type": "true or false",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
}


def _wording(model: type[Input], error: Any, data: Mapping[str, Any]) -> InvalidArgument:
    loc = tuple(error.get("loc") or ())
    if not loc:
        return InvalidArgument(f"{model.tool_name} arguments are invalid", field="arguments")
    name = str(loc[0])
    field = model.model_fields.get(name)
    if error.get("type") == "missing":
        return InvalidArgument(f"{name} is required", field=name)
    if error.get("type") == "extra_forbidden":
        return unknown_argument(model.tool_name, name, model.allowed())
    # Below the top level: an item of an array (``tags[2]``), or a member of a union (pydantic
    # adds the member's type to the location; the whole field is described then).
    inner = [part for part in loc[1:] if isinstance(part, int)]
    if inner and field is not None:
        path = _path(loc[: loc.index(inner[-1]) + 1])
        leaf = _LEAF_WORDS.get(str(error.get("type")), "a valid value")
        return InvalidArgument(f"{path} must be {leaf}, got {json_type(error.get('input'))}", field=path)
    value = data.get(name)
    if value is None and field is not None and field.is_required():
        return InvalidArgument(f"{name} is required", field=name)
    schema = model.model_json_schema()["properties"].get(name, {})
    branches = _branches(schema)
    enums = [v for b in branches for v in b.get("enum", [])]
    if enums and len(branches) == 1:
        allowed = [str(v) for v in enums]
        return InvalidArgument(
            f"{name} must be one of {', '.join(allowed)}; got {value!r}",
            field=name,
            details={"allowed": allowed},
        )
    if len(branches) == 1 and branches[0].get("type") in ("integer", "number"):
        value = _digits_to_int(value) if branches[0].get("type") == "integer" else _decimal_to_float(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # "60" in a query string reads as the 60 a JSON body would carry
        if isinstance(value, int) and not isinstance(value, bool):
            return InvalidArgument(f"{name} must be {describe(schema)}; got {value}", field=name)
        return InvalidArgument(f"{name} must be {describe(schema)}; got {value!r}", field=name)
    return InvalidArgument(f"{name} must be {describe(schema)}, got {json_type(value)}", field=name)


def parse(model: type[InputT], data: Any, *, allowed: list[str] | None = None) -> InputT:
    """``data`` checked against ``model``; the first problem is an ``invalid_argument`` naming the field.

    Unknown arguments are looked at first (a typo such as ``supersede`` must not surface as
    "supersedes is required"), then the fields in their declared order.
    """
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"the arguments of {model.tool_name} must be a JSON object", field="arguments")
    names = allowed if allowed is not None else model.allowed()
    unknown = sorted(str(name) for name in data if name not in model.model_fields)
    if unknown:
        raise unknown_argument(model.tool_name, unknown[0], names)
    try:
        return model.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        raise _wording(model, errors[0], data) from None


def tool_schema(model: type[Input]) -> dict[str, Any]:
    """The MCP ``inputSchema`` of an operation: the model's JSON Schema (draft 2020-12)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema
