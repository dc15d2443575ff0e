"""The seed workflow (docs/contract/story.md) as an agent on the official ``mcp`` 2.x client; run by
``tests/mcp_door/test_modern.py`` with the 2.x virtualenv's Python (never imported by the suite).

Usage: python seed_agent.py URL KEY MODE  — MODE is "2026-07-28", "auto" or "legacy". Prints one
JSON object: the JSON-RPC methods the client sent, the negotiated version, the instructions, the
prompt's text, and each step's result (while it waits, the test approves in another thread).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, key: str, mode: str) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def record(request: httpx2.Request) -> None:
        body = json.loads(request.content or b"{}")
        sent.append(
            {
                "method": body.get("method"),
                "version_header": request.headers.get("mcp-protocol-version"),
                "method_header": request.headers.get("mcp-method"),
            }
        )

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx2.Timeout(70.0),
        event_hooks={"request": [record]},
    )
    out: dict[str, Any] = {"sent": sent}
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        out["protocol_version"] = client.protocol_version
        out["instructions"] = client.instructions

        async def call(name: str, arguments: dict[str, Any]) -> Any:
            result = await client.call_tool(name, arguments)
            text = result.content[0].text if result.content else ""
            if result.is_error:
                return {"error": text}
            assert json.loads(text) == result.structured_content
            return result.structured_content

        out["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
        prompt = await client.get_prompt("governed_change", {"component": "user-service"})
        out["prompt"] = prompt.messages[0].content.text
        out["capabilities"] = await call("capabilities_get", {})
        created = await call(
            "decision_create",
            {
                "intent": "code.refactor.execute",
                "automation_mode": "propose",
                "metadata": {"component": "user-service", "change_type": "refactor"},
            },
        )
        decision_id = created["decision_id"]
        out["created"] = created
        out["context"] = await call(
            "decision_add_context",
            {
                "decision_id": decision_id,
                "context": {"step": "extracting_auth_logic", "rationale": "Improving testability"},
            },
        )
        out["evaluated"] = await call(
            "decision_evaluate",
            {
                "decision_id": decision_id,
                "policy_id": "code_change_policy_v1",
                "inputs": {"change_type": "refactor", "component": "user-service"},
            },
        )
        out["requested"] = await call(
            "decision_request_approval",
            {"decision_id": decision_id, "title": "Refactoring Approval Required", "message": "extract auth"},
        )
        out["waited"] = await call("decision_wait", {"decision_id": decision_id, "timeout_seconds": 30})
        out["closed"] = await call(
            "decision_close",
            {
                "decision_id": decision_id,
                "action": "commit",
                "reason": "Successfully refactored authentication logic",
            },
        )
        out["trace"] = await call("decision_trace", {"decision_id": decision_id})
        out["refused"] = await call("decision_get", {"decision_id": "TMEM_01J00000000000000000000000"})
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))))
