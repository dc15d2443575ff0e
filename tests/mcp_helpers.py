"""Call a tool through either door, for MCP/REST contract tests.

Both doors answer ``(is_error, value)``:

* success → ``(False, result_object)`` — the MCP ``structuredContent`` (checked to equal the JSON
  in ``content[0].text``) or the REST JSON body;
* refusal → ``(True, "[code] message")`` — the MCP ``isError`` text, or the REST error body
  rendered the same way, so ``error_code(value)`` compares across doors.

MCP calls go through the OFFICIAL ``mcp`` Python client (``streamable_http_client`` +
``ClientSession``) over real HTTP against pytest-django's ``live_server``. REST calls go through
the Django test client (in-process; same database as ``live_server``).

A contract test parametrised over the two doors::

    from tests.mcp_helpers import DOORS, call_tool, error_code

    @pytest.mark.parametrize("door", DOORS)
    def test_decision_get_of_unknown_id_is_not_found(door, live_server, make_agent):
        _, key = make_agent()
        is_error, value = call_tool(door, live_server, key, "decision_get", {"decision_id": "TMEM_X"})
        assert is_error and error_code(value) == "not_found"

``call_tool`` needs ``live_server`` for the MCP door (pass it for both; the REST door ignores
it). To compare both doors on the same call, use :func:`call_both`. A new REST operation is
added to :data:`REST_ROUTES` (most docs/contract/errors.md routes are already there).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from django.test import Client
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

DOORS = ["mcp", "rest"]

# tool → (HTTP method, path template). Arguments named in the template go into the path,
# the others into the JSON body (POST) or the query string (GET).
REST_ROUTES: dict[str, tuple[str, str]] = {
    "capabilities_get": ("GET", "/api/v1/capabilities"),
    "products_list": ("GET", "/api/v1/products"),
    "product_get": ("GET", "/api/v1/products/{product}"),
    "decision_create": ("POST", "/api/v1/decisions"),
    "decision_get": ("GET", "/api/v1/decisions/{decision_id}"),
    "decision_wait": ("GET", "/api/v1/decisions/{decision_id}/wait"),
    "decision_trace": ("GET", "/api/v1/decisions/{decision_id}/trace"),
    "decision_receipt": ("GET", "/api/v1/decisions/{decision_id}/receipt"),
    "decision_add_context": ("POST", "/api/v1/decisions/{decision_id}/context"),
    "decision_read": ("POST", "/api/v1/decisions/{decision_id}/read"),
    "decision_write": ("POST", "/api/v1/decisions/{decision_id}/write"),
    "decision_evaluate": ("POST", "/api/v1/decisions/{decision_id}/evaluate"),
    "decision_request_approval": ("POST", "/api/v1/decisions/{decision_id}/approvals"),
    "decision_close": ("POST", "/api/v1/decisions/{decision_id}/close"),
    "decision_record": ("POST", "/api/v1/records"),
    "decision_search": ("GET", "/api/v1/records"),
}

_CODE = re.compile(r"^\[([a-z_]+)\] ")


def error_code(text: str) -> str | None:
    """``"[not_found] ..."`` → ``"not_found"``."""
    match = _CODE.match(text)
    return match.group(1) if match else None


def mcp_url(live_server: Any) -> str:
    return f"{getattr(live_server, 'url', live_server)}/mcp"


def _http_client(key: str, scheme: str = "Agent", headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"{scheme} {key}", **(headers or {})},
        timeout=httpx.Timeout(30.0),
    )


def run_mcp(
    live_server: Any, key: str, work: Callable[[ClientSession], Any], *, scheme: str = "Agent"
) -> Any:
    """Open an initialized official-client session and run ``await work(session)``."""

    async def main() -> Any:
        async with _http_client(key, scheme) as http:
            async with streamable_http_client(mcp_url(live_server), http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await work(session)

    return asyncio.run(main())


def tool_result_value(result: Any) -> tuple[bool, Any]:
    """``(is_error, value)`` of an ``mcp.types.CallToolResult``; checks text == structuredContent."""
    text = result.content[0].text if result.content else ""
    if result.isError:
        return True, text
    assert result.structuredContent is not None, "a tool result must carry structuredContent"
    assert json.loads(text) == result.structuredContent, "content[0].text must be the result object as JSON"
    return False, result.structuredContent


def mcp_call(
    live_server: Any, key: str, tool: str, arguments: dict[str, Any] | None = None, *, scheme: str = "Agent"
) -> tuple[bool, Any]:
    """Call one tool with the official MCP client over HTTP."""

    async def work(session: ClientSession) -> Any:
        return await session.call_tool(tool, arguments or {})

    return tool_result_value(run_mcp(live_server, key, work, scheme=scheme))


def mcp_calls(live_server: Any, key: str, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, Any]]:
    """Several tool calls in one client session (later arguments cannot depend on earlier results)."""

    async def work(session: ClientSession) -> Any:
        return [tool_result_value(await session.call_tool(name, args)) for name, args in calls]

    return run_mcp(live_server, key, work)


def rest_call(
    key: str, tool: str, arguments: dict[str, Any] | None = None, *, client: Client | None = None
) -> tuple[bool, Any]:
    """Call the REST twin of ``tool`` with the Django test client."""
    method, template = REST_ROUTES[tool]
    arguments = dict(arguments or {})
    path_args = re.findall(r"{(\w+)}", template)
    path = template.format(**{name: arguments.pop(name, "") for name in path_args})
    client = client or Client()
    auth = {"HTTP_AUTHORIZATION": f"Agent {key}"}
    if method == "GET":
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
        response = client.get(path + ("?" + urlencode(query) if query else ""), **auth)
    else:
        response = client.generic(
            method, path, json.dumps(arguments), content_type="application/json", **auth
        )
    data = response.json()
    if response.status_code >= 400:
        error = data.get("error", {})
        return True, f"[{error.get('code')}] {error.get('message')}"
    return False, data


def call_tool(
    door: str, live_server: Any, key: str, tool: str, arguments: dict[str, Any] | None = None
) -> tuple[bool, Any]:
    """Call ``tool`` through ``door`` (``"mcp"`` or ``"rest"``)."""
    if door == "mcp":
        return mcp_call(live_server, key, tool, arguments)
    if door == "rest":
        return rest_call(key, tool, arguments)
    raise ValueError(f"unknown door {door!r}")


def call_both(
    live_server: Any, key: str, tool: str, arguments: dict[str, Any] | None = None
) -> dict[str, tuple[bool, Any]]:
    """The same call through both doors: ``{"mcp": (is_error, value), "rest": (is_error, value)}``."""
    return {door: call_tool(door, live_server, key, tool, arguments) for door in DOORS}


# Values that naturally differ between two calls (new ids, clocks, hashes over them).
VOLATILE_KEYS = frozenset(
    {"decision_id", "event_id", "created_at", "closed_at", "timestamp", "trace_head", "hash", "prev_hash"}
)


def shape(value: Any, volatile: frozenset[str] = VOLATILE_KEYS) -> Any:
    """``value`` with volatile fields replaced by a type marker, for comparing two doors' results."""
    if isinstance(value, dict):
        return {
            k: (f"<{type(v).__name__}>" if k in volatile and v is not None else shape(v, volatile))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(shape(v, volatile) for v in value)
    return value


def jsonrpc(
    live_server: Any,
    key: str | None,
    message: Any,
    *,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """One raw JSON-RPC POST (or other method) to /mcp, for protocol and security tests."""
    all_headers = {"Accept": "application/json, text/event-stream", **(headers or {})}
    if key is not None:
        all_headers["Authorization"] = f"Agent {key}"
    content = message if isinstance(message, bytes | str) else json.dumps(message)
    if method == "POST":
        all_headers.setdefault("Content-Type", "application/json")
        return httpx.post(mcp_url(live_server), content=content, headers=all_headers, timeout=30)
    return httpx.request(method, mcp_url(live_server), headers=all_headers, timeout=30)


def mcp_post(key: str, tool: str, arguments: dict[str, Any] | None = None, *, request_id: int = 1) -> Any:
    """One ``tools/call`` POSTed to /mcp through the Django test client (in-process, no live
    server): for tests that need the raw HTTP answer (status, headers, the JSON-RPC body)."""
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments or {}},
    }
    return Client().post(
        "/mcp",
        json.dumps(message),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_ACCEPT="application/json, text/event-stream",
    )
