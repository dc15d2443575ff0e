"""The official MCP Python client against a live server over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_helpers import mcp_url, run_mcp, tool_result_value
from tracemem_core.version import MODERN_PROTOCOL_VERSIONS, PROTOCOL_VERSIONS, SERVER_VERSION
from tracemem_verify.chain import GENESIS_HASH, event_hash

# docs/contract/tools.md tools built so far; add yours here when its <app>/mcp.py lands.
SPEC_TOOLS = {
    "capabilities_get",
    "products_list",
    "product_get",
    "decision_create",
    "decision_add_context",
    "decision_get",
    "decision_trace",
    "decision_close",
    "decision_read",
    "decision_write",
    "decision_evaluate",
    "decision_request_approval",
    "decision_receipt",
    "decision_record",
    "decision_search",
    "decision_wait",  # docs/contract/interfaces.md
}


def test_initialize_negotiates_latest_protocol_and_names_the_server(
    live_server: Any, make_agent: Any
) -> None:
    _, key = make_agent()

    async def init_only() -> Any:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
            async with streamable_http_client(mcp_url(live_server), http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    return await session.initialize()

    result = asyncio.run(init_only())
    assert result.protocolVersion == PROTOCOL_VERSIONS[0]
    assert result.serverInfo.name == "tracemem"
    assert result.serverInfo.version == SERVER_VERSION
    assert "decision_create" in (result.instructions or "")
    assert result.capabilities.tools is not None


def test_tools_list_has_every_tool_with_its_input_schema(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent()

    async def work(session: ClientSession) -> Any:
        return await session.list_tools()

    tools = {t.name: t for t in run_mcp(live_server, key, work).tools}
    # Exactly the docs/contract/tools.md tools: nothing missing, and no stray tool (e.g. the package's own extras).
    assert set(tools) == SPEC_TOOLS
    create = tools["decision_create"].inputSchema
    assert create["required"] == ["intent", "automation_mode"]
    assert create["properties"]["automation_mode"]["enum"] == ["propose", "approve", "override", "autonomous"]
    close = tools["decision_close"].inputSchema
    assert close["required"] == ["decision_id"]
    assert close["properties"]["action"]["anyOf"][0]["enum"] == ["commit", "abort", "rollback"]
    assert set(tools["decision_add_context"].inputSchema["properties"]) == {
        "decision_id",
        "context",
        "summary",
        "payload",
        "contexts",  # batch context, docs/contract/interfaces.md
    }
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        assert tool.outputSchema == {
            "type": "object",
            "additionalProperties": True,
            "title": f"{tool.name}DictOutput",
        }


def test_seed_workflow_create_context_get_close_trace_verifies(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent("codex-agent")

    async def work(session: ClientSession) -> list[Any]:
        out = [tool_result_value(await session.call_tool("capabilities_get", {}))]
        ok, created = tool_result_value(
            await session.call_tool(
                "decision_create",
                {
                    "intent": "code.refactor.execute",
                    "automation_mode": "autonomous",
                    "metadata": {"component": "user-service", "api_key": "sk-abcdefghijklmnopqrstuvwx"},
                },
            )
        )
        out.append((ok, created))
        did = created["decision_id"]
        out.append(
            tool_result_value(
                await session.call_tool(
                    "decision_add_context",
                    {
                        "decision_id": did,
                        "context": {"step": "extracting_auth_logic", "rationale": "testability"},
                    },
                )
            )
        )
        out.append(tool_result_value(await session.call_tool("decision_get", {"decision_id": did})))
        out.append(
            tool_result_value(
                await session.call_tool(
                    "decision_close", {"decision_id": did, "action": "commit", "reason": "refactored"}
                )
            )
        )
        out.append(tool_result_value(await session.call_tool("decision_trace", {"decision_id": did})))
        return out

    caps, created, context, got, closed, trace = run_mcp(live_server, key, work)
    assert caps == (
        False,
        {
            "agent_id": agent.agent_id,
            "name": "codex-agent",
            "permissions": {"data_products": [], "policies": []},
            # Without grants, only the steps that need none (no read, evaluate or write).
            "workflow": [
                {"tool": tool, "when": step["when"]}
                for tool, step in zip(
                    [
                        "decision_create",
                        "decision_add_context",
                        "decision_request_approval",
                        "decision_wait",
                        "decision_close",
                    ],
                    caps[1]["workflow"],
                    strict=True,
                )
            ],
            "server": {
                "name": "tracemem",
                "version": SERVER_VERSION,
                "protocol_versions": [*MODERN_PROTOCOL_VERSIONS, *PROTOCOL_VERSIONS],
            },
        },
    )
    assert created[0] is False and created[1]["status"] == "open"
    did = created[1]["decision_id"]
    assert did.startswith("TMEM_") and len(did) == 31
    assert context[0] is False and context[1]["event_id"].startswith("evt_")
    assert got[1]["status"] == "open" and got[1]["event_count"] == 2 and got[1]["agent_id"] == agent.agent_id
    assert closed == (
        False,
        {
            "decision_id": did,
            "status": "committed",
            "closed_at": closed[1]["closed_at"],
            "trace_head": closed[1]["trace_head"],
        },
    )
    events = trace[1]["events"]
    assert [e["type"] for e in events] == ["created", "context", "close"]
    assert events[0]["payload"]["metadata"] == {"component": "user-service", "api_key": "[redacted]"}
    # The chain verifies from the tool result alone.
    prev = GENESIS_HASH
    for event in events:
        assert event["prev_hash"] == prev
        body = {
            k: event[k]
            for k in ("decision_id", "event_id", "seq", "type", "timestamp", "actor", "payload", "prev_hash")
        }
        assert event_hash(body) == event["hash"]
        prev = event["hash"]
    assert trace[1]["trace_head"] == prev == closed[1]["trace_head"]
