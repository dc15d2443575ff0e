"""The one place TraceMem touches django-mcp-server's and FastMCP's internals.

The MCP door (``tracemem_site/mcp.py``) answers common JSON-RPC messages itself (the fast path) and
wraps FastMCP's tools so refusals read ``[code] message``. Both need objects those libraries do not
publish (their tool registry, the toolset method caller, the request context variable). They are
reached only through the functions below, so an upgrade of django-mcp-server (pinned 0.5.7) or mcp
(1.30) is checked here, and ``tests/mcp_door/test_fast_path_parity.py`` compares every answer of the
fast path with the stock transport's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.fastmcp.tools.base import Tool
from mcp.server.fastmcp.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_server.djangomcp import (
    _SyncToolCallWrapper,
    _ToolsetMethodCaller,
    django_request_ctx,
    global_mcp_server,
)

#: django-mcp-server's FastMCP server (public: tools and prompts are registered on it).
server = global_mcp_server

__all__ = [
    "ArgModelBase",
    "FuncMetadata",
    "tool_method",
    "server",
    "has_tool",
    "Tool",
    "ToolError",
    "fast_callable",
    "initialization_options",
    "list_tools",
    "low_level_server",
    "registered_tools",
    "run_sync_tool",
    "toolset_method",
]


def registered_tools() -> dict[str, Tool]:
    """FastMCP's registry of tools (name → Tool), which ``configure_mcp_server`` rewraps."""
    tools: dict[str, Tool] = global_mcp_server._tool_manager._tools
    return tools


def low_level_server() -> Any:
    """The low-level ``mcp.server.Server`` (version, instructions, initialisation options)."""
    return global_mcp_server._mcp_server


def initialization_options() -> Any:
    return low_level_server().create_initialization_options()


def list_tools() -> Coroutine[Any, Any, Any]:
    return global_mcp_server.list_tools()


def has_tool(name: str) -> bool:
    return global_mcp_server._tool_manager.get_tool(name) is not None


def fast_callable(name: str) -> tuple[Tool, Any] | None:
    """The tool and its toolset caller when the fast path may call it directly: a plain sync method
    of an ``MCPToolset`` that does not ask for the MCP context (else None: the stock path runs it).
    Remembered per registered tool object (a tool registered anew is looked at anew)."""
    tool = global_mcp_server._tool_manager.get_tool(name)
    known = _fast_callables.get(name)
    if known is not None and known[0] is tool:
        return known[1]
    found = _fast_callable(tool)
    _fast_callables[name] = (tool, found)
    return found


_fast_callables: dict[str, tuple[Tool | None, tuple[Tool, Any] | None]] = {}


def _fast_callable(tool: Tool | None) -> tuple[Tool, Any] | None:
    caller = getattr(tool, "fn", None)
    if tool is None or not isinstance(caller, _ToolsetMethodCaller) or caller.forward_context_kwarg:
        return None
    if not getattr(caller.class_, "mcp_fast_path", True):
        return None
    return tool, caller


def tool_method(tool: Tool) -> Callable[..., Any] | None:
    """The unbound ``MCPToolset`` method behind a registered tool (None for any other kind)."""
    caller = tool.fn
    if isinstance(caller, _ToolsetMethodCaller):
        return toolset_method(caller)
    return None


def toolset_method(caller: Any) -> Callable[..., Any]:
    return getattr(caller.class_, caller.method_name)


def run_sync_tool(caller: Any, request: Any, arguments: dict[str, Any]) -> Any:
    """Call the toolset method as django-mcp-server would: the request in its context variable,
    the method run through its sync wrapper."""
    token = django_request_ctx.set(request)
    try:
        instance = caller.class_(context=None, request=request)
        return _sync_wrapper(getattr(instance, caller.method_name))(**arguments)
    finally:
        django_request_ctx.reset(token)


def _sync_wrapper(method: Any) -> Any:
    """django-mcp-server's ``_SyncToolCallWrapper`` of ``method``, without ``functools.update_wrapper``
    copying the method's name, docstring and attributes onto it: its call reads none of them (only
    ``fn`` and the serializer attribute of ``fn`` itself) (docs/performance.md §25)."""
    wrapper = _SyncToolCallWrapper.__new__(_SyncToolCallWrapper)
    wrapper.fn = method
    return wrapper
