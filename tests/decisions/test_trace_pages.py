"""Trace reads are bounded (docs/contract/interfaces.md "Trace pages"): ``decision_trace {decision_id, after_seq?, limit?}``
returns at most ``limit`` events after ``after_seq`` and ``next_after_seq`` (null on the last page),
over MCP and REST alike; MCP text content is compact JSON; the HTML timeline pages too; every
verifier still recomputes the whole chain by walking the pages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from decisions import selectors, services
from decisions.integrity import decision_problems
from decisions.models import Decision
from tests.conftest import AgentClient, superuser_sql
from tests.mcp_helpers import mcp_post
from tracemem_core.actor import Actor
from tracemem_verify.chain import verify_chain

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _decision(actor: Actor, events: int) -> Decision:
    decision = services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    for i in range(events - 1):
        services.decision_add_context(
            actor=actor, decision_id=decision.decision_id, context={"step": i, "note": "ünïcode ✓"}
        )
    decision.refresh_from_db()
    return decision


def _mcp(key: str, tool: str, arguments: dict[str, Any]) -> Any:
    response = mcp_post(key, tool, arguments)
    assert response.status_code == 200, response.content
    return response.json()["result"]


def _walk_rest(api: AgentClient, decision_id: str, limit: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = api.get(f"/api/v1/decisions/{decision_id}/trace?after_seq={after}&limit={limit}").json()
        assert len(page["events"]) <= limit
        events += page["events"]
        after = page["next_after_seq"]
    return events


def test_limit_100_returns_100_events_and_a_cursor_then_the_next_pages(
    api: AgentClient, agent_actor: Actor
) -> None:
    decision = _decision(agent_actor, 250)
    url = f"/api/v1/decisions/{decision.decision_id}/trace"
    first = api.get(f"{url}?limit=100").json()
    assert [e["seq"] for e in first["events"]] == list(range(1, 101))
    assert first["next_after_seq"] == 100
    assert (first["event_count"], first["trace_head"]) == (250, decision.trace_head)
    second = api.get(f"{url}?after_seq=100&limit=100").json()
    assert [e["seq"] for e in second["events"]] == list(range(101, 201))
    assert second["next_after_seq"] == 200
    last = api.get(f"{url}?after_seq=200&limit=100").json()
    assert [e["seq"] for e in last["events"]] == list(range(201, 251))
    assert last["next_after_seq"] is None
    beyond = api.get(f"{url}?after_seq=250").json()
    assert (beyond["events"], beyond["next_after_seq"]) == ([], None)


def test_without_arguments_a_page_is_the_default_size_and_a_short_trace_is_one_page(
    api: AgentClient, agent_actor: Actor
) -> None:
    short = _decision(agent_actor, 3)
    whole = api.get(f"/api/v1/decisions/{short.decision_id}/trace").json()
    assert [e["seq"] for e in whole["events"]] == [1, 2, 3] and whole["next_after_seq"] is None
    assert selectors.TRACE_PAGE_DEFAULT == 500 and selectors.TRACE_PAGE_MAX == 1000


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after_seq=-1", "after_seq"),
        ("after_seq=1.5", "after_seq"),
        ("after_seq=x", "after_seq"),
        ("page=2", "page"),
    ],
)
def test_bad_page_arguments_are_invalid_argument_naming_the_field(
    api: AgentClient, agent_actor: Actor, query: str, field: str
) -> None:
    decision = _decision(agent_actor, 2)
    response = api.get(f"/api/v1/decisions/{decision.decision_id}/trace?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["details"]["field"] == field
    assert field in error["message"]


def test_mcp_pages_like_rest_with_compact_text_no_longer_than_the_rest_body(
    api: AgentClient, agent_and_key: Any, agent_actor: Actor
) -> None:
    decision = _decision(agent_actor, 150)
    key = agent_and_key[1]
    result = _mcp(key, "decision_trace", {"decision_id": decision.decision_id, "limit": 100})
    assert result["isError"] is False
    text = result["content"][0]["text"]
    assert json.loads(text) == result["structuredContent"]
    assert "\n" not in text and ", " not in text[:200]  # compact: no indentation, no spaces
    page = result["structuredContent"]
    assert [e["seq"] for e in page["events"]] == list(range(1, 101)) and page["next_after_seq"] == 100
    rest = api.get(f"/api/v1/decisions/{decision.decision_id}/trace?limit=100")
    assert rest.json() == page
    assert len(text.encode()) <= 1.1 * len(rest.content)
    rest_last = api.get(f"/api/v1/decisions/{decision.decision_id}/trace?after_seq=100&limit=100").json()
    mcp_last = _mcp(
        key, "decision_trace", {"decision_id": decision.decision_id, "after_seq": 100, "limit": 100}
    )
    assert mcp_last["structuredContent"] == rest_last and rest_last["next_after_seq"] is None
    refused = _mcp(key, "decision_trace", {"decision_id": decision.decision_id, "limit": 5000})
    assert refused["isError"] is True
    assert refused["content"][0]["text"].startswith("[invalid_argument] limit")


def test_every_tool_result_text_is_compact_json(agent_and_key: Any) -> None:
    result = _mcp(agent_and_key[1], "capabilities_get", {})
    text = result["content"][0]["text"]
    assert text == json.dumps(result["structuredContent"], separators=(",", ":"), ensure_ascii=False)


def test_walking_the_pages_recomputes_the_whole_chain(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision(agent_actor, 230)
    events = _walk_rest(api, decision.decision_id, 100)
    assert [e["seq"] for e in events] == list(range(1, 231))
    assert verify_chain(decision.decision_id, events) is None
    assert events[-1]["hash"] == decision.trace_head


def _corrupt(decision: Decision, seq: int) -> None:
    """As the PostgreSQL superuser, behind TraceMem's back (needs committed rows)."""
    superuser_sql(
        'UPDATE decisions_traceevent SET payload = \'{"context": {"step": "forged"}}\' '
        "WHERE decision_id = %s AND seq = %s",
        params=[decision.decision_id, seq],
    )


@pytest.mark.django_db(transaction=True)
def test_server_side_verifiers_walk_every_page(agent_actor: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "TRACE_PAGE_MAX", 40)  # so 120 events are three pages
    decision = _decision(agent_actor, 120)
    assert decision_problems(decision) == []
    _corrupt(decision, 101)
    assert decision_problems(decision) == ["broken at seq 101: hash does not match the event's content"]
    with pytest.raises(CommandError):
        call_command("verify_traces", "--decision", decision.decision_id)


@pytest.mark.django_db(transaction=True)
def test_the_html_timeline_pages_and_its_chain_badge_checks_the_whole_chain(
    agent_actor: Actor, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "TRACE_PAGE_DEFAULT", 50)
    decision = _decision(agent_actor, 120)
    url = f"/decisions/{decision.decision_id}/"
    first = admin_client.get(url).content.decode()
    assert first.count('<li id="event-') == 50
    assert 'href="?after_seq=50"' in first
    assert "events 1–50 of 120" in first
    last = admin_client.get(f"{url}?after_seq=100").content.decode()
    assert last.count('<li id="event-') == 20 and "events 101–120 of 120" in last
    assert "later →" not in last and 'href="?after_seq=50">← earlier' in last  # no "later" on the last page
    assert 'status-ok" id="chain-badge"' in last and "(120 events)" in last
    _corrupt(decision, 110)
    # The badge on the FIRST page still finds a break that lives on the third.
    assert 'status-broken" id="chain-badge"' in admin_client.get(url).content.decode()
    assert admin_client.get(f"{url}?after_seq=abc").status_code == 400


def test_offline_verifier_takes_a_trace_in_pages(
    api: AgentClient, agent_actor: Actor, tmp_path: Path
) -> None:
    decision = _decision(agent_actor, 130)
    services.decision_close(actor=agent_actor, decision_id=decision.decision_id, action="commit")
    (tmp_path / "receipt.json").write_text(
        api.get(f"/api/v1/decisions/{decision.decision_id}/receipt").content.decode()
    )
    (tmp_path / "keys.json").write_text(Client().get("/.well-known/tracemem/receipt-keys").content.decode())
    pages = []
    for after in (0, 100):
        path = tmp_path / f"trace-{after}.json"
        path.write_text(
            api.get(
                f"/api/v1/decisions/{decision.decision_id}/trace?after_seq={after}&limit=100"
            ).content.decode()
        )
        pages.append(str(path))

    def verify(*trace_args: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "tracemem_verify", str(tmp_path / "receipt.json")]
        args += [a for p in trace_args for a in ("--trace", p)]
        args += ["--keys", str(tmp_path / "keys.json")]
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)

    whole = verify(*pages)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "trace of 131 events" in whole.stdout
    one_page = verify(pages[0])
    assert one_page.returncode == 1
    assert "next_after_seq=100" in one_page.stdout and "--trace" in one_page.stdout
