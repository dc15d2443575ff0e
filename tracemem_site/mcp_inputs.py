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


class _ToolArguments(ArgModelBase):
    """What FastMCP's call path validates arguments with, for a tool with an input model."""

    input_model: ClassVar[type[Input]]
    parameter: ClassVar[str]
    string_fields: ClassVar[frozenset[str]]
    parsed: Any = None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> _ToolArguments:
        data = dict(obj) if isinstance(obj, dict) else obj
        if isinstance(data, dict):
            for name, value in obj.items():
                if name in cls.input_model.model_fields and name not in cls.string_fields:
                    data[name] = _json_text(value)
        return cls.model_construct(parsed=parse(cls.input_model, data))

    def model_dump_one_level(self) -> dict[str, Any]:
        return {self.parameter: self.parsed}


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
    return type(
        f"{model.__name__}Arguments",
        (_ToolArguments,),
        {
            "input_model": model,
            "parameter": parameter,
            "string_fields": frozenset(n for n, s in properties.items() if _takes_strings(s)),
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
        (parameter,) = (name for name in typing.get_type_hints(method) if name != "return")
        old = tool.fn_metadata
        tool.parameters = tool_schema(model)
        tool.fn_metadata = FuncMetadata.model_construct(
            arg_model=arguments_model(model, parameter),
            output_schema=old.output_schema,
            output_model=old.output_model,
            wrap_output=old.wrap_output,
        )
