"""The MCP door's use of the operations' input models (``tracemem_core.inputs``).

A tool method takes one parameter annotated with its input model::

    def decision_get(self, args: DecisionGet) -> dict[str, Any]: ...

django-mcp-server registers it as usual; :func:`install_input_models` (called once at startup,
after registration) then makes the tool publish the model's JSON Schema as its ``inputSchema``
and check ``tools/call`` arguments with :func:`tracemem_core.inputs.parse` — the same function the
REST door uses, so the same bad input reads the same on both doors. Both the stock transport and
the fast path call ``fn_metadata.arg_model.model_validate`` and ``model_dump_one_level``, which is
all this replaces.

MCP keeps FastMCP's leniency of accepting a JSON-encoded string for an argument that is not a
string (some clients send objects that way); REST takes JSON values only.
"""

from __future__ import annotations

import json
import typing
from typing import Any, ClassVar

from tracemem_core.inputs import Input, parse, tool_schema
from tracemem_site.mcp_adapter import ArgModelBase, FuncMetadata, Tool


def input_model_of(method: Any) -> type[Input] | None:
    """The input model a tool method declares (its one parameter's annotation), if any."""
    hints = typing.get_type_hints(method)
    hints.pop("return", None)
    if len(hints) != 1:
        return None
    (annotation,) = hints.values()
    return annotation if isinstance(annotation, type) and issubclass(annotation, Input) else None


def _takes_strings(schema: dict[str, Any]) -> bool:
    branches = schema.get("anyOf", [schema])
    return any(branch.get("type") == "string" for branch in branches)


class ToolArguments(ArgModelBase):
    """What FastMCP's call path validates arguments with, for a tool with an input model."""

    input_model: ClassVar[type[Input]]
    parameter: ClassVar[str]
    string_fields: ClassVar[frozenset[str]]
    json_fields: ClassVar[frozenset[str]]  # the input model's fields but string_fields
    parsed: Any = None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> ToolArguments:
        return cls.model_construct(parsed=cls.parsed_input(obj))

    def model_dump_one_level(self) -> dict[str, Any]:
        return {self.parameter: self.parsed}

    @classmethod
    def parsed_input(cls, obj: Any) -> Input:
        data = dict(obj) if isinstance(obj, dict) else obj
        if isinstance(data, dict):
            for name, value in obj.items():
                if name in cls.json_fields:
                    data[name] = _json_text(value)
        return parse(cls.input_model, data)

    @classmethod
    def call_arguments(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool method's keyword arguments for ``arguments``: what FastMCP's
        ``model_validate(pre_parse_json(arguments)).model_dump_one_level()`` gives, without
        constructing this model (the MCP fast path, docs/performance.md §25). ``pre_parse_json``
        only looks at this model's own field (``parsed``), which no input model takes
        (:func:`install_input_models` makes sure), so it changes nothing here."""
        return {cls.parameter: cls.parsed_input(arguments)}


def _json_text(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict | list):
            return parsed
    return value


def arguments_model(model: type[Input], parameter: str) -> type[ArgModelBase]:
    properties = tool_schema(model)["properties"]
    string_fields = frozenset(n for n, s in properties.items() if _takes_strings(s))
    return type(
        f"{model.__name__}Arguments",
        (ToolArguments,),
        {
            "input_model": model,
            "parameter": parameter,
            "string_fields": string_fields,
            "json_fields": frozenset(n for n in model.model_fields if n not in string_fields),
            "__module__": __name__,
        },
    )


def install_input_models(tools: dict[str, Tool], method_of: Any) -> None:
    """Give every tool whose method declares an input model that model's schema and checks.

    ``method_of(tool)`` returns the tool's unbound toolset method (or None).
    """
    for tool in tools.values():
        method = method_of(tool)
        if method is None:
            continue
        model = input_model_of(method)
        if model is None:
            continue
        if set(model.model_fields) & set(ToolArguments.model_fields):
            raise TypeError(f"{model.__name__}: a field named like the arguments model's own ({tool.name})")
        (parameter,) = (name for name in typing.get_type_hints(method) if name != "return")
        old = tool.fn_metadata
        tool.parameters = tool_schema(model)
        tool.fn_metadata = FuncMetadata.model_construct(
            arg_model=arguments_model(model, parameter),
            output_schema=old.output_schema,
            output_model=old.output_model,
            wrap_output=old.wrap_output,
        )
