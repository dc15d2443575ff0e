"""MCP/REST contract tests for decision_receipt, decision_record and decision_search.

Each operation runs through the official MCP client and the REST door; both must give the same
result shape and the same refusal codes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from decisions import receipts
from decisions.models import Decision, DecisionRecord
from tests.mcp_helpers import DOORS, call_tool, error_code, mcp_calls, shape

pytestmark = pytest.mark.django_db(transaction=True)

RECORD = {
    "title": "Cache capabilities per key",
    "category": "architecture",
    "context": "capabilities_get is called on every session start.",
    "decision": "Cache it in Redis for a minute.",
    "rationale": "Memoizing avoids repeated grant queries on hot paths.",
    "tags": ["cache", "mcp"],
}


@pytest.fixture(autouse=True)
def signing_key() -> Iterator[None]:
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=base64.b64encode(bytes(range(1, 33))).decode()):
        yield
    receipts._load_signing_key.cache_clear()


def test_all_three_tools_are_listed_with_their_arguments(live_server: Any, make_agent: Any) -> None:
    from mcp import ClientSession

    from tests.mcp_helpers import run_mcp

    _, key = make_agent()

    async def work(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {t.name: t for t in run_mcp(live_server, key, work)}
    assert set(tools["decision_receipt"].inputSchema["properties"]) == {"decision_id"}
    assert set(tools["decision_record"].inputSchema["required"]) == {
        "title",
        "category",
        "context",
        "decision",
        "rationale",
    }
    assert set(tools["decision_search"].inputSchema["properties"]) == {
        "query",
        "category",
        "tags",
        "status",
        "limit",
    }


@pytest.mark.parametrize("door", DOORS)
def test_record_then_search_then_receipt_through_each_door(
    door: str, live_server: Any, make_agent: Any
) -> None:
    agent, key = make_agent()

    is_error, recorded = call_tool(door, live_server, key, "decision_record", RECORD)
    assert not is_error, recorded
    assert shape(recorded) == {
        "decision_id": "<str>",
        "status": "committed",
        "created_at": "<str>",
        "closed_at": "<str>",
        "title": "Cache capabilities per key",
        "category": "architecture",
        "tags": ["cache", "mcp"],
        "supersedes": None,
    }

    is_error, found = call_tool(
        door, live_server, key, "decision_search", {"query": "memoize", "tags": ["mcp"], "limit": 5}
    )
    assert not is_error, found
    assert found["count"] == 1
    assert found["results"][0]["decision_id"] == recorded["decision_id"]
    assert found["results"][0]["superseded_by"] is None

    is_error, receipt = call_tool(
        door, live_server, key, "decision_receipt", {"decision_id": recorded["decision_id"]}
    )
    assert not is_error, receipt
    decision = Decision.objects.get(pk=recorded["decision_id"])
    assert receipt["receipt_data"]["trace_head"] == decision.trace_head
    assert receipt["receipt_data"]["event_count"] == 1
    assert receipt["algorithm"] == "ed25519"


@pytest.mark.parametrize("door", DOORS)
def test_refusals_carry_the_same_codes_through_each_door(
    door: str, live_server: Any, make_agent: Any
) -> None:
    _, key = make_agent()
    _, other_key = make_agent()
    _, theirs = call_tool(door, live_server, other_key, "decision_record", RECORD)
    before = DecisionRecord.objects.count()

    cases: list[tuple[str, dict[str, Any], str]] = [
        ("decision_receipt", {"decision_id": theirs["decision_id"]}, "not_found"),
        ("decision_record", {**RECORD, "supersedes": theirs["decision_id"]}, "not_found"),
        ("decision_record", {**RECORD, "category": "security"}, "invalid_argument"),
        ("decision_search", {"limit": 101}, "invalid_argument"),
    ]
    for tool, arguments, code in cases:
        is_error, value = call_tool(door, live_server, key, tool, arguments)
        assert is_error and error_code(value) == code, (tool, value)
    assert DecisionRecord.objects.count() == before
    is_error, found = call_tool(door, live_server, key, "decision_search", {})
    assert (is_error, found) == (False, {"results": [], "count": 0})


def test_receipt_of_an_open_decision_is_invalid_state_over_mcp(live_server: Any, make_agent: Any) -> None:
    _, key = make_agent()
    [(is_error, created)] = mcp_calls(
        live_server,
        key,
        [("decision_create", {"intent": "code.refactor.execute", "automation_mode": "autonomous"})],
    )
    assert not is_error
    [(is_error, value)] = mcp_calls(
        live_server, key, [("decision_receipt", {"decision_id": created["decision_id"]})]
    )
    assert is_error
    assert value == (
        f"[invalid_state] decision {created['decision_id']} is open: receipts exist only for closed decisions; "
        "call decision_close first, then decision_receipt"
    )
