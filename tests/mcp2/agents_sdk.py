"""The OpenAI Agents SDK's ``MCPServerStreamableHttp`` with the Authorization header, against
TraceMem; run by ``tests/mcp_door/test_modern.py`` with the 2.x virtualenv's Python (no model is called:
the SDK's MCP server object lists and calls tools itself).

Usage: python agents_sdk.py URL KEY — prints one JSON object with what each step returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from agents.mcp import MCPServerStreamableHttp


async def main(url: str, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    params = {"url": url, "headers": {"Authorization": f"Bearer {key}"}, "timeout": 30}
    async with MCPServerStreamableHttp(params=params, name="tracemem") as server:  # type: ignore[arg-type]
        out["tools"] = sorted(tool.name for tool in await server.list_tools())

        async def call(name: str, arguments: dict[str, Any]) -> Any:
            result = await server.call_tool(name, arguments)
            text = result.content[0].text if result.content else ""
            return {"error": text} if result.is_error else json.loads(text)

        out["capabilities"] = await call("capabilities_get", {})
        created = await call(
            "decision_create", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
        )
        out["waited"] = await call(
            "decision_wait", {"decision_id": created["decision_id"], "timeout_seconds": 5}
        )
        out["closed"] = await call(
            "decision_close", {"decision_id": created["decision_id"], "action": "commit"}
        )
        out["refused"] = await call("decision_get", {"decision_id": "TMEM_01J00000000000000000000000"})
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
