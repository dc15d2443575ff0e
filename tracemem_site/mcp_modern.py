"""MCP protocol revision 2026-07-28 on ``POST /mcp``, next to the four handshake-era versions.

A 2026-07-28 request stands alone: no ``initialize``, no session. Each JSON-RPC request carries
``params._meta`` with ``io.modelcontextprotocol/protocolVersion`` and ``.../clientCapabilities``
(and usually ``.../clientInfo``); the HTTP headers repeat the routing facts, and the server checks
them in the revision's order (the "ladder"), the first failure winning:

1. ``params._meta`` is an object with the protocol version and client capabilities → else
   ``-32602`` (invalid params);
2. ``MCP-Protocol-Version`` equals the envelope's version, ``Mcp-Method`` the method, and
   ``Mcp-Name`` the tool or prompt name (``tools/call``, ``prompts/get``) → else ``-32020``
   (header mismatch);
3. the version is one this server speaks → else ``-32022`` with ``data: {supported, requested}``
   (a client in ``auto`` mode then falls back to ``initialize``).

Errors of the ladder and of dispatch go out with the revision's HTTP statuses (400; 404 for an
unknown method); a business refusal stays a tool result with ``isError`` (``[code] message``), as
on every version. Every result carries ``resultType: "complete"`` and the server's identity in
``_meta``. ``server/discover`` answers the versions, capabilities and the instructions that
``initialize`` gives older clients. Notifications are acknowledged (202) and dropped; ``ping`` and
the other methods the revision removed are unknown methods.

The tools, the prompt and their results are the very ones the handshake-era path serves (the same
tool manager, the same fast path). Tested with the official ``mcp`` 2.x client in
``tests/mcp_door/test_modern.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydantic
from django.http import HttpResponse
from mcp import types

from tracemem_core import waits
from tracemem_core.version import MODERN_PROTOCOL_VERSIONS, PROTOCOL_VERSIONS, SERVER_NAME, SERVER_VERSION
from tracemem_site import mcp_adapter

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"

HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
HTTP_STATUS = {
    types.PARSE_ERROR: 400,
    types.INVALID_REQUEST: 400,
    types.INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    -32021: 400,  # missing required client capability
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    types.METHOD_NOT_FOUND: 404,
}
NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
JSON = "application/json"


class _Refusal(Exception):  # noqa: N818 - a JSON-RPC error answer, raised to leave dispatch early
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def is_modern(meta: Mapping[str, Any], data: Any) -> bool:
    """A 2026-07-28-era request: its version header is not a handshake-era one, and it says so
    (the header names a modern version, or the body carries the per-request envelope)."""
    header = meta.get("HTTP_MCP_PROTOCOL_VERSION")
    if header in PROTOCOL_VERSIONS:
        return False
    if header in MODERN_PROTOCOL_VERSIONS:
        return True
    params = data.get("params") if isinstance(data, dict) else None
    envelope = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(envelope, dict) and PROTOCOL_VERSION_META in envelope


def _answer(
    request_id: Any, *, result: dict[str, Any] | None = None, error: _Refusal | None = None
) -> HttpResponse:
    if error is not None:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        message = {"jsonrpc": "2.0", "id": request_id, "error": body}
        status = HTTP_STATUS.get(error.code, 200)
    else:
        result = {**(result or {}), "resultType": "complete"}
        result["_meta"] = {
            **(result.get("_meta") or {}),
            SERVER_INFO_META: {"name": SERVER_NAME, "version": SERVER_VERSION},
        }
        message = {"jsonrpc": "2.0", "id": request_id, "result": result}
        status = 200
    return HttpResponse(
        json.dumps(message, separators=(",", ":"), ensure_ascii=False), status=status, content_type=JSON
    )


def _ladder(meta: Mapping[str, Any], data: dict[str, Any]) -> None:
    params = data.get("params")
    envelope = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(envelope, dict):
        raise _Refusal(
            types.INVALID_PARAMS,
            f"params._meta must be an object carrying {PROTOCOL_VERSION_META!r} and {CLIENT_CAPABILITIES_META!r}",
        )
    missing = [key for key in (PROTOCOL_VERSION_META, CLIENT_CAPABILITIES_META) if key not in envelope]
    if missing:
        raise _Refusal(types.INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}")
    version = envelope[PROTOCOL_VERSION_META]
    header = meta.get("HTTP_MCP_PROTOCOL_VERSION")
    if header is None or header != version:
        raise _Refusal(
            HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta's protocol version"
        )
    method = data.get("method")
    if meta.get("HTTP_MCP_METHOD") != method:
        raise _Refusal(HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
    name_key = NAMED.get(str(method))
    if name_key is not None and isinstance(params, dict):
        value = params.get(name_key)
        if value is not None and _decode_header(meta.get("HTTP_MCP_NAME")) != value:
            raise _Refusal(HEADER_MISMATCH, f"Mcp-Name header does not match the request's {name_key!r}")
    if version not in MODERN_PROTOCOL_VERSIONS:
        raise _Refusal(
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": [*MODERN_PROTOCOL_VERSIONS, *PROTOCOL_VERSIONS], "requested": version},
        )


def _decode_header(value: str | None) -> str | None:
    """Header values outside printable ASCII travel as ``=?base64?…?=`` (the revision's rule)."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    import base64
    import binascii

    try:
        return base64.b64decode(value[len("=?base64?") : -2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _run(factory: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(by_alias=True, mode="json", exclude_none=True))


def _discover(view: Any, request: Any, params: dict[str, Any]) -> dict[str, Any]:
    low = mcp_adapter.low_level_server()
    options = low.create_initialization_options()
    return {
        "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
        "capabilities": _dump(options.capabilities),
        "instructions": low.instructions,
    }


_tools_cache: dict[str, Any] = {}


def _tools_list(view: Any, request: Any, params: dict[str, Any]) -> dict[str, Any]:
    if "tools" not in _tools_cache:
        _tools_cache["tools"] = [_dump(tool) for tool in _run(mcp_adapter.list_tools)]
    return {"tools": _tools_cache["tools"]}


def _tools_call(view: Any, request: Any, params: dict[str, Any]) -> dict[str, Any]:
    parsed = types.CallToolRequestParams.model_validate(params)
    result = view._call_tool(request, parsed)
    if result is None:
        raise _Refusal(types.INVALID_PARAMS, f"Unknown tool: {parsed.name}")
    return _dump(result)


def _prompts_list(view: Any, request: Any, params: dict[str, Any]) -> dict[str, Any]:
    return {"prompts": [_dump(prompt) for prompt in _run(mcp_adapter.server.list_prompts)]}


def _prompts_get(view: Any, request: Any, params: dict[str, Any]) -> dict[str, Any]:
    parsed = types.GetPromptRequestParams.model_validate(params)
    try:
        result = _run(lambda: mcp_adapter.server.get_prompt(parsed.name, parsed.arguments))
    except ValueError as exc:  # unknown prompt, missing or bad arguments
        raise _Refusal(types.INVALID_PARAMS, str(exc)) from None
    return _dump(result)


def _empty_list(key: str) -> Callable[[Any, Any, dict[str, Any]], dict[str, Any]]:
    return lambda view, request, params: {key: []}


# Results the revision lets clients cache must say for whom and how long: per agent (the answer
# depends on the key), and not at all (tools can change with a deployment).
CACHEABLE = {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list"}
CACHE_HINT = {"cacheScope": "private", "ttlMs": 0}

METHODS: dict[str, Callable[[Any, Any, dict[str, Any]], dict[str, Any]]] = {
    "server/discover": _discover,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
    "prompts/list": _prompts_list,
    "prompts/get": _prompts_get,
    "resources/list": _empty_list("resources"),
    "resources/templates/list": _empty_list("resourceTemplates"),
}


def handle(view: Any, request: Any, data: Any) -> HttpResponse:
    """Answer one 2026-07-28 message (``view`` is the MCP view, for its fast tool call)."""
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0" or not isinstance(data.get("method"), str):
        return _answer(
            None, error=_Refusal(types.INVALID_REQUEST, "Invalid Request: send one JSON-RPC message")
        )
    if "id" not in data:
        return HttpResponse(b"", status=202, content_type=JSON)  # notifications carry nothing here
    request_id = data["id"]
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return _answer(
            None, error=_Refusal(types.INVALID_REQUEST, "Invalid Request: id must be a string or number")
        )
    try:
        _ladder(request.META, data)
        handler = METHODS.get(data["method"])
        if handler is None:
            raise _Refusal(types.METHOD_NOT_FOUND, f"Method not found: {data['method']}")
        params = data.get("params") or {}
        try:
            result = handler(view, request, params)
            if data["method"] in CACHEABLE:
                result = {**result, **CACHE_HINT}
        except pydantic.ValidationError as exc:
            errors = exc.errors()
            where = ".".join(str(part) for part in errors[0].get("loc", ())) if errors else "params"
            raise _Refusal(
                types.INVALID_PARAMS,
                f"Invalid params: {where or 'params'} {errors[0]['msg'] if errors else ''}".strip(),
            ) from None
    except waits.ParkRequest:
        return HttpResponse(status=204)  # decision_wait parked under the front; it replays this request
    except _Refusal as refusal:
        return _answer(request_id, error=refusal)
    return _answer(request_id, result=result)
