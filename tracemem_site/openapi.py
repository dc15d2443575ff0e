"""OpenAPI for the operations' input models (``tracemem_core.inputs``), as drf-spectacular needs it.

``@extend_schema(request=SomeInput)`` documents the body: the model's JSON Schema without the
fields the URL path carries, written in OpenAPI 3.0 (``nullable: true`` instead of a ``null``
branch). A GET operation lists the same model's fields as query parameters
(:func:`query_parameters`).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter

from tracemem_core.inputs import Input, tool_schema
from tracemem_core.outputs import Output


def oas30(schema: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) in the OpenAPI 3.0 dialect."""
    if isinstance(schema, list):
        return [oas30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: oas30(value) for key, value in schema.items() if key not in ("title", "properties")}
    if isinstance(schema.get("properties"), dict):  # names, not keywords: a field may be called title
        out["properties"] = {name: oas30(sub) for name, sub in schema["properties"].items()}
    branches = out.get("anyOf")
    if isinstance(branches, list) and any(b.get("type") == "null" for b in branches):
        rest = [b for b in branches if b.get("type") != "null"]
        del out["anyOf"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
        if out.get("default", ...) is None:
            del out["default"]
    return out


def body_schema(model: type[Input], path_fields: set[str]) -> dict[str, Any]:
    schema = tool_schema(model)
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in path_fields}
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in path_fields]
        if not schema["required"]:
            del schema["required"]
    return oas30(schema)


class InputModelExtension(OpenApiSerializerExtension):
    """Documents an :class:`Input` model given as ``request=`` (before the stock pydantic support)."""

    target_class = Input
    match_subclasses = True
    priority = 1

    def get_name(self, auto_schema: Any, direction: str) -> str:
        return f"{self.target.__name__}Input"

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return body_schema(self.target, set(re.findall(r"{(\w+)}", auto_schema.path)))


def inline_refs(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """``schema`` with every ``$ref`` into its ``$defs`` replaced by the definition (no cycles here)."""
    if defs is None and isinstance(schema, dict):
        defs = schema.get("$defs", {})
        schema = {k: v for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [inline_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and defs is not None:
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return inline_refs({**defs[ref.removeprefix("#/$defs/")], **siblings}, defs)
    return {key: inline_refs(value, defs) for key, value in schema.items()}


def result_schema(model: type[Output]) -> dict[str, Any]:
    """A result shape as OpenAPI 3.0: nested shapes inline, nullable fields ``nullable: true``."""
    return oas30(inline_refs(model.model_json_schema(mode="serialization", by_alias=True)))


class OutputModelExtension(OpenApiSerializerExtension):
    """Documents an :class:`Output` result shape given in ``responses=``."""

    target_class = Output
    match_subclasses = True
    priority = 1

    def get_name(self, auto_schema: Any, direction: str) -> str:
        return self.target.__name__

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return result_schema(self.target)


def query_parameters(model: type[Input], *, path: tuple[str, ...] = ()) -> list[OpenApiParameter]:
    """The fields of a GET operation's model (the path's aside) as OpenAPI query parameters."""
    schema = tool_schema(model)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        if name in path:
            continue
        prop = oas30(prop)
        description = str(prop.pop("description", ""))
        prop.pop("nullable", None)
        if "anyOf" in prop:  # e.g. tags: an array or a comma-separated string; a query carries text
            prop = {"type": "string"}
        params.append(OpenApiParameter(name, prop, required=name in required, description=description))
    return params
