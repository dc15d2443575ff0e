"""MCP door for discovery: ``capabilities_get`` (docs/contract/tools.md)."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from agents import selectors
from tracemem_site.mcp import mcp_actor


class DiscoveryTools(MCPToolset):
    def capabilities_get(self) -> dict[str, Any]:
        """Check the connection and learn what you may do. Call this first (the "doctor").

        Returns your agent_id and name, the data products you may use (with their permissions
        and allowed purposes), the policies you may evaluate, and the server's name, version and
        supported MCP protocol versions. If this call fails with [unauthenticated], your API key
        is missing, wrong, expired or revoked: ask the user for a valid TraceMem agent key.
        """
        return selectors.capabilities(mcp_actor(self.request).require_agent())
