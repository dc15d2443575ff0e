"""The ``POST /mcp`` endpoint: django-mcp-server's view, made safe and cheap.

Why a subclass instead of ``mcp_server.urls``:

* ``GET /mcp`` on the stock view opens a server-to-client stream that never ends and keeps a
  worker busy; docs/contract/surfaces.md says GET answers 405, so GET/DELETE are refused before anything runs.
* A client that sends no ``Accept`` header must still work (docs/contract/surfaces.md); the stock transport
  answers 406, so the header is filled in.
* ``Origin`` is checked against an allow-list (the stock view checks neither Host nor Origin).
* The stock path builds an event loop, a session manager and four task groups per request
  (~4x the cost of a DRF view). :class:`FastPathMixin` answers the common single messages
  synchronously from the same tool manager and produces byte-identical results
  (``tests/mcp_door/test_fast_path_parity.py`` proves it); everything else takes the stock path.

Business errors: tools let ``DomainError`` propagate; :func:`tool_error_result` turns it into an
``isError`` result whose text is ``"[code] message"`` on both paths (the stock FastMCP would
prefix "Error executing tool ...", which agents should not have to parse).

This module touches private names of django-mcp-server 0.5.7 and mcp 1.30 (pinned exactly).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import jsonschema
import orjson
import pydantic
import pydantic_core
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from mcp import types
from mcp_server.views import MCPServerStreamableHttpView
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from tracemem_core import rawjson, safejson, waits
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, InvalidArgument, Unauthenticated, Unavailable
from tracemem_core.inputs import unknown_argument
from tracemem_core.outage import database_outage
from tracemem_core.requestid import current_request_id
from tracemem_core.version import PROTOCOL_VERSIONS, SERVER_VERSION
from tracemem_site import mcp_adapter
from tracemem_site import mcp_modern as modern
from tracemem_site.mcp_adapter import Tool, ToolError
from tracemem_site.mcp_inputs import ToolArguments, install_input_models
from tracemem_site.parsers import PayloadTooLarge

logger = logging.getLogger(__name__)

SERVER_INSTRUCTIONS = """\
TraceMem records and governs what you decide and do. Work inside a decision envelope, in this order:
1. capabilities_get once: checks your key; lists the products and policies you may use and, under
   "workflow", the steps open to you.
2. decision_create(intent="domain.entity.action", automation_mode=propose|approve|override|autonomous)
   before you act; keep the decision_id for every later call.
3. decision_add_context as the work goes on (what you know, why you act). Secrets are redacted.
4. decision_evaluate(policy_id, inputs) before acting: allow -> go on; deny -> do not act, abort;
   requires_exception -> a human must approve first.
5. decision_request_approval(title, message) when a policy or your mode needs a human, then
   decision_wait(decision_id): it returns the moment a reviewer answers, or after timeout_seconds
   (default 25, max 50) with timed_out true -- then call it again. Do not poll decision_get.
   approval_status approved -> continue; rejected or expired -> abort.
6. decision_write (and decision_read) through data products, only once allowed or approved.
7. decision_close(action="commit") when done, or action="abort" to give up.
The prompt governed_change walks through this flow with its arguments filled in.
Errors come back as "[code] message"; the message says what to do next:
[invalid_argument] fix the named argument; [unauthenticated] the key is missing or invalid, ask
the user; [permission_denied] / [purpose_not_allowed] not granted to you, ask an admin;
[policy_denied] a policy denied this, abort; [approval_required] request approval, then
decision_wait; [invalid_state] the decision's state forbids it (read decision_get); [not_found]
wrong id or not yours; [conflict] it exists or is already pending; [rate_limited] wait
Retry-After seconds; [unavailable] a dependency is down, nothing was applied, retry later."""

ACCEPT_DEFAULT = "application/json, text/event-stream"
JSON = "application/json"
# JSON-RPC "server error" range (-32000..-32099): TraceMem could not serve the request because a
# dependency is down; nothing was applied (error.data says so and when to retry).
UNAVAILABLE = -32003


# --- errors: one mapping for the stock and the fast path ------------------------------------


def _pydantic_message(error: Any) -> tuple[str, str]:
    loc = error.get("loc") or ()
    field = ".".join(str(part) for part in loc) or "arguments"
    if error.get("type") == "missing":
        return field, f"{field} is required"
    message = str(error.get("msg", "is invalid"))
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    return field, f"{field} {message}"


def tool_error_result(tool_name: str, exc: BaseException) -> types.CallToolResult:
    """The ``isError`` result an agent sees for an exception raised while calling a tool."""
    if isinstance(exc, ToolError) and exc.__cause__ is not None:
        exc = exc.__cause__
    exc = database_outage(exc) or exc
    if isinstance(exc, DomainError):
        text = str(exc)
    elif isinstance(exc, pydantic.ValidationError):
        errors = exc.errors()
        field, message = _pydantic_message(errors[0]) if errors else ("arguments", "arguments are invalid")
        text = str(InvalidArgument(message, field=field))
    else:
        logger.error("tool %s failed", tool_name, exc_info=exc)
        text = "[internal] internal error; the server logged it. Retry later or report it"
        request_id = current_request_id()
        if request_id:  # the id of this request's log lines (and its X-Request-ID header)
            text += f" (request id {request_id})"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def unknown_arguments(tool: Tool, arguments: dict[str, Any]) -> InvalidArgument | None:
    """An argument the tool does not take is refused, never silently dropped (a typo such as
    ``supersede`` for ``supersedes`` would otherwise lose data without a word)."""
    properties = tool.parameters.get("properties", {})
    if arguments.keys() <= properties.keys():
        return None
    allowed = sorted(properties)
    unknown = sorted(name for name in arguments if name not in allowed)
    return unknown_argument(tool.name, unknown[0], allowed)


def too_deep_arguments(arguments: dict[str, Any]) -> InvalidArgument | None:
    """FastMCP parses a JSON-looking string argument with ``json.loads`` (a leniency some clients
    need); a string nesting deeper than the body limit would crash it with a RecursionError."""
    limit = safejson.max_depth()
    for name, value in arguments.items():
        if isinstance(value, str) and safejson.nesting_exceeds(value, limit):
            return InvalidArgument(
                f"{name} is a JSON text nested deeper than {limit} levels; send flatter data",
                field=name,
                details={"max_depth": limit},
            )
    return None


def argument_refusal(tool: Tool, arguments: dict[str, Any]) -> InvalidArgument | None:
    return unknown_arguments(tool, arguments) or too_deep_arguments(arguments)


def compact_text(structured: Any) -> list[types.TextContent]:
    """The result object as compact JSON text (docs/contract/surfaces.md: the text is the object as JSON).

    FastMCP pretty-prints (indent=2), which made a long trace ~2.5x its REST body; compact text is
    the same size as the REST body. Both paths (stock and fast) use this.
    """
    try:
        text = orjson.dumps(structured).decode()
    except TypeError:  # what orjson does not write (integers beyond 64 bits, non-string keys)
        text = json.dumps(structured, separators=(",", ":"), ensure_ascii=False)
    return [types.TextContent(type="text", text=text)]


class DomainTool(Tool):
    """A FastMCP tool whose failures are ``[code] message`` results (stock path)."""

    async def run(self, arguments: dict[str, Any], context: Any = None, convert_result: bool = False) -> Any:
        refused = argument_refusal(self, arguments)
        if refused is not None:
            return tool_error_result(self.name, refused)
        try:
            result = await super().run(arguments, context=context, convert_result=convert_result)
        except ToolError as exc:
            return tool_error_result(self.name, exc)
        if convert_result and isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
            return compact_text(result[1]), result[1]
        return result


class _DropDomainErrors(logging.Filter):
    """django-mcp-server logs every tool exception with a traceback; refusals are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DomainError | pydantic.ValidationError | waits.ParkRequest)


def configure_mcp_server() -> None:
    """Called once from ``TracememSiteConfig.ready()`` after django-mcp-server registered the tools."""
    low = mcp_adapter.low_level_server()
    # Setting the version once skips an importlib.metadata lookup on every request.
    low.version = SERVER_VERSION
    low.instructions = SERVER_INSTRUCTIONS
    tools = mcp_adapter.registered_tools()
    for name, tool in list(tools.items()):
        if not isinstance(tool, DomainTool):
            fields = {f: getattr(tool, f) for f in Tool.model_fields}
            # Docstrings are the agent's manual; drop their source indentation.
            fields["description"] = inspect.cleandoc(fields["description"] or "")
            tools[name] = DomainTool.model_construct(**fields)
    # Tools whose method takes an input model publish and check that model (tracemem_site/inputs.py).
    install_input_models(tools, mcp_adapter.tool_method)
    logging.getLogger("mcp_server.djangomcp").addFilter(_DropDomainErrors())
    _tool_list_cache.clear()


# --- Origin ---------------------------------------------------------------------------------


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(request: Request) -> bool:
    """No Origin (non-browser clients) is fine; a browser Origin must be us or on the allow-list."""
    origin = request.META.get("HTTP_ORIGIN")
    if not origin:
        return True
    origin = origin.strip().lower().rstrip("/")
    own = {_origin_of(request.build_absolute_uri("/")), _origin_of(settings.TRACEMEM_PUBLIC_URL)}
    allowed = {o.strip().lower().rstrip("/") for o in settings.TRACEMEM_MCP_ALLOWED_ORIGINS}
    return origin in own or origin in allowed or "*" in allowed


class OriginNotAllowed(exceptions.PermissionDenied):
    default_detail = "cross-site Origin is not allowed for /mcp"


# --- the fast path --------------------------------------------------------------------------

_tool_list_cache: dict[str, Any] = {}


def _jsonrpc_result(request_id: Any, result: Any) -> HttpResponse:
    """``result`` is one of the SDK's result models (InitializeResult, ListToolsResult, ...)."""
    message = types.JSONRPCMessage(
        types.JSONRPCResponse(
            jsonrpc="2.0",
            id=request_id,
            result=types.ServerResult(result).model_dump(by_alias=True, mode="json", exclude_none=True),
        )
    )
    return HttpResponse(message.model_dump_json(by_alias=True, exclude_none=True), content_type=JSON)


def _jsonrpc_bytes(request_id: Any, result: Any) -> bytes:
    """``_jsonrpc_result``'s body (the HTTP response encodes the text as UTF-8, so does this)."""
    return _jsonrpc_result(request_id, result).content


def _keyword_arguments(meta: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """The tool method's keyword arguments, checked, as FastMCP's call path makes them."""
    model = meta.arg_model
    if issubclass(model, ToolArguments):  # every TraceMem tool with an input model
        return model.call_arguments(arguments)
    return model.model_validate(meta.pre_parse_json(arguments)).model_dump_one_level()


def _run_coroutine(factory: Any) -> Any:
    """Run ``await factory()`` from sync code, even if this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _tools_list_response(request_id: Any) -> HttpResponse:
    """``tools/list``, serialised once (tools are registered at startup); only the id is spliced in."""
    cached = _tool_list_cache.get("tail")
    if cached is None:
        tools = _run_coroutine(mcp_adapter.list_tools)
        result = types.ServerResult(types.ListToolsResult(tools=tools))
        # Exactly the stock serialisation: result dumped to a dict, then the envelope to JSON.
        envelope = types.JSONRPCResponse(
            jsonrpc="2.0", id=0, result=result.model_dump(by_alias=True, mode="json", exclude_none=True)
        ).model_dump_json(by_alias=True, exclude_none=True)
        prefix = '{"jsonrpc":"2.0","id":0,'
        if not envelope.startswith(prefix):
            raise RuntimeError("mcp serialised a JSON-RPC envelope this server does not expect")
        cached = envelope[len(prefix) :].encode()
        _tool_list_cache["tail"] = cached
        _tool_list_cache["validators"] = {
            t.name: jsonschema.validators.validator_for(t.outputSchema)(t.outputSchema)
            for t in tools
            if t.outputSchema is not None
        }
    head = b'{"jsonrpc":"2.0","id":' + pydantic_core.to_json(request_id) + b","
    return HttpResponse(head + cached, content_type=JSON)


def _output_validator(name: str) -> Any:
    if "validators" not in _tool_list_cache:
        _tools_list_response(0)
    return _tool_list_cache["validators"].get(name)


class FastPathMixin:
    """Answer single JSON-RPC messages synchronously; return None to take the stock path."""

    def fast_path(self, request: Request) -> HttpResponse | None:
        data = request.data
        if modern.is_modern(request.META, data):
            return modern.handle(self, request, data)
        if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
            return None
        method = data.get("method")
        if not isinstance(method, str):
            return None
        if method != "initialize":
            # The stock transport refuses an unsupported version header (400) before anything else.
            version = request.META.get("HTTP_MCP_PROTOCOL_VERSION")
            if version is not None and version not in PROTOCOL_VERSIONS:
                return None
        params = data.get("params")
        if params is not None and not isinstance(params, dict):
            return None
        if "id" not in data:
            # A notification: nothing to record in a stateless server.
            if method.startswith("notifications/"):
                return HttpResponse(b"", status=202, content_type=JSON)
            return None
        request_id = data["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            return None
        try:
            if method == "initialize":
                return self._initialize(request_id, params)
            if method == "ping":
                return _jsonrpc_result(request_id, types.EmptyResult())
            if method == "tools/list":
                return _tools_list_response(request_id)
            if method == "tools/call":
                return self._tools_call(request, request_id, params)
        except pydantic.ValidationError:
            return None  # malformed params: the stock path words the JSON-RPC error
        return None

    def _initialize(self, request_id: Any, params: dict[str, Any] | None) -> HttpResponse:
        parsed = types.InitializeRequestParams.model_validate(params)
        options = mcp_adapter.initialization_options()
        requested = parsed.protocolVersion
        result = types.InitializeResult(
            protocolVersion=requested if requested in PROTOCOL_VERSIONS else types.LATEST_PROTOCOL_VERSION,
            capabilities=options.capabilities,
            serverInfo=types.Implementation(
                name=options.server_name,
                version=options.server_version,
                websiteUrl=options.website_url,
                icons=options.icons,
            ),
            instructions=options.instructions,
        )
        return _jsonrpc_result(request_id, result)

    def _tools_call(
        self, request: Request, request_id: Any, params: dict[str, Any] | None
    ) -> HttpResponse | None:
        return self.tools_call(request, request_id, types.CallToolRequestParams.model_validate(params))

    def tools_call(
        self, request: Any, request_id: Any, parsed: types.CallToolRequestParams
    ) -> HttpResponse | None:
        """The answer to a ``tools/call``, or None when the stock path must run the tool."""
        answered = self.tools_call_answer(request, request_id, parsed.name, parsed.arguments)
        if answered is None:
            return None
        status, body = answered
        return HttpResponse(body, status=status, content_type=JSON) if body else HttpResponse(status=status)

    def tools_call_answer(
        self, request: Any, request_id: Any, name: str, arguments: dict[str, Any] | None
    ) -> tuple[int, bytes] | None:
        """The HTTP status and JSON-RPC body of the answer to a ``tools/call`` of tool ``name``
        (``tools_call``'s, and the agent door's, tracemem_site/agent_door.py, which sends the bytes
        without building a Django response), or None when the stock path must run the tool. A
        parked ``decision_wait`` is ``(204, b"")``."""
        try:
            with rawjson.passthrough():  # decision_trace's events come back as JSON text (issue 17)
                outcome = self._run_tool(request, name, arguments)
        except waits.ParkRequest:
            # decision_wait under the front: it waits without this thread and replays the request.
            return 204, b""
        if outcome is None:
            return None
        if isinstance(outcome, _Returned):
            if rawjson.holds_raw(outcome.value):
                return 200, _raw_tool_result(request_id, rawjson.dumps(outcome.value))
            body = tool_success_bytes(request_id, outcome.tool, outcome.value)
            if body is not None:
                return 200, body
            outcome = self._convert(outcome)
        return 200, _jsonrpc_bytes(request_id, outcome)

    def _call_tool(
        self, request: Request, parsed: types.CallToolRequestParams
    ) -> types.CallToolResult | None:
        """Run a synchronous toolset tool in this thread; None if it must take the stock path.
        Raises :class:`waits.ParkRequest` when decision_wait parks under the front."""
        outcome = self._run_tool(request, parsed.name, parsed.arguments)
        return self._convert(outcome) if isinstance(outcome, _Returned) else outcome

    def _run_tool(
        self, request: Request, name: str, arguments: dict[str, Any] | None
    ) -> types.CallToolResult | _Returned | None:
        """What the tool returned (not converted yet), its refusal as a result, or None (stock path)."""
        found = mcp_adapter.fast_callable(name)
        if found is None:
            return None
        tool, caller = found
        if _is_async(caller):
            return None
        arguments = arguments or {}
        refused = argument_refusal(tool, arguments)
        if refused is not None:
            return tool_error_result(tool.name, refused)
        try:
            keywords = _keyword_arguments(tool.fn_metadata, arguments)
            with waits.door_parks():
                value = mcp_adapter.run_sync_tool(caller, request, keywords)
        except waits.ParkRequest:
            raise
        except Exception as exc:
            return tool_error_result(tool.name, exc)
        return _Returned(tool, value)

    def _convert(self, returned: _Returned) -> types.CallToolResult:
        """FastMCP's conversion of a tool's return value, as mcp's low-level handler finishes it."""
        try:
            converted = returned.tool.fn_metadata.convert_result(returned.value)
            return self._normalise(returned.tool.name, converted)
        except Exception as exc:
            return tool_error_result(returned.tool.name, exc)

    @staticmethod
    def _normalise(name: str, converted: Any) -> types.CallToolResult:
        """What mcp's low-level call_tool handler does with a FastMCP result."""
        if isinstance(converted, types.CallToolResult):
            return converted
        if isinstance(converted, tuple) and len(converted) == 2:
            content, structured = converted
            if isinstance(structured, dict):
                content = compact_text(structured)
        elif isinstance(converted, dict):
            structured = converted
            content = compact_text(converted)
        else:
            content, structured = converted, None
        validator = _output_validator(name)
        if validator is not None:
            if structured is None:
                return _error(
                    "Output validation error: outputSchema defined but no structured output returned"
                )
            # jsonschema.validate() reports the best match; so does this, with a cached validator.
            problem = jsonschema.exceptions.best_match(validator.iter_errors(structured))
            if problem is not None:
                return _error(f"Output validation error: {problem.message}")
        return types.CallToolResult(content=list(content), structuredContent=structured, isError=False)


def _raw_tool_result(request_id: Any, structured: bytes) -> bytes:
    """A successful ``tools/call`` answer whose structured result is JSON text already written
    (a trace page, issue 17): the stock answer's fields and order, its text content the same JSON
    (compact_text), without parsing the result and serialising it twice more through pydantic."""
    text = orjson.dumps(structured.decode())
    return (
        b'{"jsonrpc":"2.0","id":'
        + pydantic_core.to_json(request_id)
        + b',"result":{"content":[{"type":"text","text":'
        + text
        + b'}],"structuredContent":'
        + structured
        + b',"isError":false}}'
    )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


class _Returned(NamedTuple):
    """A tool's return value, before FastMCP's conversion."""

    tool: Tool
    value: Any


_async_callers: dict[tuple[type, str], bool] = {}


def _is_async(caller: Any) -> bool:
    """Whether the toolset method is a coroutine function (looked up once per method)."""
    key = (caller.class_, caller.method_name)
    found = _async_callers.get(key)
    if found is None:
        found = _async_callers[key] = asyncio.iscoroutinefunction(mcp_adapter.toolset_method(caller))
    return found


def _any_object(schema: Any) -> bool:
    """An output schema every JSON object satisfies: FastMCP's for a tool returning ``dict[str, Any]``
    (``{"type": "object", "additionalProperties": true, "title": ...}``)."""
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and schema.get("additionalProperties", True) is True
        and set(schema) <= {"type", "additionalProperties", "title", "description"}
    )


def _not_native(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not written natively here")


# Datetimes and dataclasses go to _not_native (pydantic and orjson write them differently); str,
# int, float, bool, None, dict, list, tuple, their subclasses, enums and UUIDs are written by both
# alike (tests/mcp_door/test_fast_result.py).
_NATIVE_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def tool_success_bytes(request_id: Any, tool: Tool, value: Any) -> bytes | None:
    """The JSON-RPC answer to a ``tools/call`` whose tool returned the object ``value``, serialised
    once: the same bytes as FastMCP's ``convert_result`` (an indented text, then the output model's
    validation and dump), the output-schema check, the compact text and two pydantic dumps of the
    envelope (``_jsonrpc_result``): 265-320 µs of CPU a call, where this takes 3-9 µs
    (docs/performance.md §8). None where that equality is not proven: then that path runs.

    The output schema must be one every object satisfies (all of TraceMem's tools), so the check
    cannot fail; the value must be written by orjson without a fallback (not a datetime, not an
    integer beyond 64 bits, string keys only) — pydantic_core writes such values byte for byte alike.
    """
    meta = tool.fn_metadata
    if type(value) is not dict or meta.wrap_output or not _any_object(meta.output_schema):
        return None
    try:
        body = orjson.dumps(value, option=_NATIVE_ONLY, default=_not_native)
    except TypeError:  # orjson.JSONEncodeError included
        return None
    return b"".join(
        (
            b'{"jsonrpc":"2.0","id":',
            pydantic_core.to_json(request_id),
            b',"result":{"content":[{"type":"text","text":',
            orjson.dumps(body.decode()),
            b'}],"structuredContent":',
            body,
            b',"isError":false}}',
        )
    )


def _transport_refusal(exc: Exception) -> tuple[int, int, str] | None:
    if isinstance(exc, PayloadTooLarge | RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return 413, types.INVALID_REQUEST, f"Invalid Request: the body is larger than {limit} bytes"
    if isinstance(exc, exceptions.ParseError):
        return 400, types.PARSE_ERROR, f"Parse error: {exc.detail}"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return 415, types.INVALID_REQUEST, "Invalid Request: send the JSON-RPC message as application/json"
    return None


def _unavailable_response(request: Request, error: Unavailable) -> HttpResponse:
    """A dependency failed before the message could be handled (e.g. while authenticating).

    The answer is a JSON-RPC answer with HTTP 200 (and ``Retry-After``): MCP clients, the official
    ``mcp`` SDK among them, raise on an HTTP error status without reading the body and tear their
    whole session down, so a 503 reached the agent as a bare "503 Service Unavailable" and lost
    "not applied". A ``tools/call`` gets the tool error a mid-call outage gets (``isError``,
    ``[unavailable] …``); any other request a JSON-RPC error ``-32003`` with the same text and
    ``data``; a notification is accepted (202: nothing to record).
    """
    try:
        data = request.data
    except Exception:  # the body is unreadable: the error is still about the outage
        data = None
    message = data if isinstance(data, dict) else {}
    if message and "id" not in message:
        response = HttpResponse(b"", status=202, content_type=JSON)
    else:
        request_id = message.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int):
            request_id = None
        params = message.get("params")
        tool_name = params.get("name") if isinstance(params, dict) else None
        if message.get("method") == "tools/call" and request_id is not None and isinstance(tool_name, str):
            response = _jsonrpc_result(request_id, tool_error_result(tool_name, error))
        else:
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {
                    "code": UNAVAILABLE,
                    "message": str(error),
                    "data": error.as_dict()["details"] | {"code": error.code},
                },
            }
            response = HttpResponse(json.dumps(body), content_type=JSON)
    response["Retry-After"] = str(error.retry_after)
    return response


def _auth_classes() -> list[Any]:
    return [import_string(cls) for cls in settings.DJANGO_MCP_AUTHENTICATION_CLASSES]


@method_decorator(csrf_exempt, name="dispatch")
class StockMCPView(MCPServerStreamableHttpView):
    """django-mcp-server's transport, with GET/DELETE refused, Origin checked and Accept defaulted."""

    http_method_names = ["post", "options"]
    permission_classes = [IsAuthenticated]

    def get_authenticators(self) -> list[Any]:
        return [cls() for cls in _auth_classes()]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Refuse before authenticating: a browser page must not learn anything by probing.
        if request.method and request.method.lower() not in self.http_method_names:
            raise exceptions.MethodNotAllowed(request.method)
        if not origin_allowed(request):
            raise OriginNotAllowed()
        self._default_accept(request._request)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Any:
        # A body that is not JSON, too large, or not JSON at all never reaches the transport; MCP
        # clients expect a JSON-RPC error object for it, not the REST error body. (Authentication
        # and Origin refusals keep the contract's JSON body: they are about the caller, not the message.)
        refusal = _transport_refusal(exc)
        if refusal is not None:
            http_status, code, message = refusal
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
            return HttpResponse(json.dumps(body), status=http_status, content_type=JSON)
        outage = database_outage(exc)
        if outage is not None:
            return _unavailable_response(self.request, outage)
        return super().handle_exception(exc)

    @staticmethod
    def _default_accept(request: HttpRequest) -> None:
        # docs/contract/surfaces.md: a POST without Accept (or with */*) works. DRF's negotiation and the stock
        # transport both need application/json to be named, so it is added.
        accept = request.META.get("HTTP_ACCEPT", "").strip()
        if JSON not in accept:
            request.META["HTTP_ACCEPT"] = f"{accept}, {ACCEPT_DEFAULT}" if accept else ACCEPT_DEFAULT
            # Django caches request.headers; the stock transport reads them later.
            request.__dict__.pop("headers", None)


def _name_operation(request: Request) -> None:
    """Label request metrics with the JSON-RPC method (``tools/call:<tool>`` for a tool call); an
    unknown tool name is not echoed into a label (unbounded), it is ``tools/call:unknown``."""
    # Only a body already parsed (never parse here: a parse error must reach the transport once).
    data = getattr(request, "_full_data", None)
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        return
    method = data["method"]
    if method == "tools/call":
        params = data.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        known = isinstance(name, str) and mcp_adapter.has_tool(name)
        method = f"tools/call:{name if known else 'unknown'}"
    elif method not in _KNOWN_METHODS:
        method = "other"
    request._request.tracemem_operation = f"mcp:{method}"


_KNOWN_METHODS = {
    "initialize",
    "ping",
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "server/discover",
}


class MCPView(FastPathMixin, StockMCPView):
    """``POST /mcp``: the fast path first, the stock transport for everything else."""

    schema = None  # JSON-RPC, not REST: its contract is tools/list, not the OpenAPI document

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = self.fast_path(request)
            if response is not None:
                return response
            return super().post(request, *args, **kwargs)
        finally:
            _name_operation(request)


def mcp_actor(request: Any) -> Actor:
    """The agent's Actor, put on the request by ``agents.auth.AgentKeyAuthentication``."""
    actor = getattr(request, "auth", None)
    if isinstance(actor, Actor) and actor.agent is not None:
        return actor
    raise Unauthenticated("MCP tools need an agent key: send 'Authorization: Agent <key>' or 'Bearer <key>'")
