"""A trace page's events written by PostgreSQL and passed through (issue 17) answer the same values,
headers and pages as the model path, whatever the payloads hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from rest_framework.renderers import JSONRenderer

from agents.models import Agent
from decisions import selectors, services
from decisions.models import Decision
from decisions.serializers import trace_out
from tests.conftest import AgentClient
from tests.mcp_helpers import mcp_post
from tracemem_core.actor import Actor
from tracemem_site import mcp_adapter

pytestmark = pytest.mark.django_db

# The chain's hash (RFC 8785) refuses integers beyond 2^53, but floats that jsonb stores as numerics
# read back as integers of any size (2.0**64, written 1.8446744073709552e+19, is 18446744073709552000): those are the big integers a
# trace holds, beside the largest exact ones.
TRICKY: list[Any] = [
    {
        "max": 2**53 - 1,
        "min": -(2**53 - 1),
        "f53": 2.0**53,
        "f63": 2.0**63,
        "f64": 2.0**64,
        "neg": -(2.0**64),
    },
    {"e19": 1e19, "e21": 1e21, "digits25": 1.2345678901234567e25, "e16": 1e16, "mixed": 123456789.125},
    {"f": 1.0, "tiny": 1e-7, "third": 0.1 + 0.2, "huge": 1e300, "sub": 5e-324, "e16": 1e16, "neg0": -0.0},
    {"text": 'naïve → 中文 🚀 \U0001f600 \u2028 \u2029 "q" \\ \x01\x1f\t\n\r / \x7f', "": ""},
    {"nested": {"a": [1, [2, {"b": None, "c": [[], {}]}]], "é": {"\U0001f680": [True, False]}}},
    {"empty_list": [], "empty_obj": {}, "zero": 0, "str_digits": "12345678901234567890123"},
]


def _decision(actor: Actor, contexts: list[Any] = TRICKY) -> Decision:
    """Events holding ``contexts`` one by one, then all in one batch. Appended below the doors, which
    refuse integers beyond 2^53 today: a trace may hold them from before (and must read back)."""
    decision = services.decision_create(actor=actor, intent="a.b.c", automation_mode="autonomous")
    for context in contexts:
        services.trace_append(
            decision=Decision.objects.get(pk=decision.pk),
            type="context",
            actor=actor,
            payload={"context": context},
        )
    services.trace_append_many(
        decision=Decision.objects.get(pk=decision.pk),
        type="context",
        actor=actor,
        payloads=[{"context": c} for c in contexts],
    )
    decision.refresh_from_db()
    return decision


def _model_path_value(decision: Decision, after_seq: Any = None, limit: Any = None) -> Any:
    """What the trace door answered before (ORM objects, DRF's renderer), parsed."""
    page = selectors.trace_page(decision, after_seq=after_seq, limit=limit)
    return json.loads(JSONRenderer().render(trace_out(decision, page.events, page.next_after_seq)))


def _typed(value: Any) -> str:
    return json.dumps(value, sort_keys=True)  # 1 vs 1.0 differ here, as they would in the hash


@pytest.fixture
def model_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def force() -> None:
        monkeypatch.setattr(selectors, "trace_page_json", lambda *a, **k: None)

    return force


def test_the_raw_page_is_what_postgresql_wrote(agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    page = selectors.trace_page_json(decision)
    assert page is not None and page.events_json.startswith(b"[{")
    assert len(json.loads(page.events_json)) == decision.event_count


@pytest.mark.parametrize(
    ("after_seq", "limit"), [(None, None), (0, 5), (3, 4), (9, 100), (12, 1), (13, 10), (500, 10)]
)
def test_the_rest_door_answers_the_model_paths_values(
    api: AgentClient, agent_actor: Actor, after_seq: Any, limit: Any
) -> None:
    decision = _decision(agent_actor)
    query = "&".join(f"{k}={v}" for k, v in (("after_seq", after_seq), ("limit", limit)) if v is not None)
    response = api.get(f"/api/v1/decisions/{decision.decision_id}/trace?{query}")
    assert response.status_code == 200
    got = json.loads(response.content)
    want = _model_path_value(decision, after_seq, limit)
    assert got == want
    assert _typed(got) == _typed(want)
    assert list(got) == list(want)  # the envelope's fields in the same order


def test_tricky_values_survive_exactly(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    body = json.loads(api.get(f"/api/v1/decisions/{decision.decision_id}/trace").content)
    contexts = [e["payload"]["context"] for e in body["events"][1:]]
    assert (
        contexts[0]["max"] == 2**53 - 1 and contexts[0]["f64"] == 18446744073709552000 == -contexts[0]["neg"]
    )
    assert contexts[1]["e21"] == 10**21 and contexts[1]["digits25"] == int(
        Decimal(repr(TRICKY[1]["digits25"]))
    )
    assert isinstance(contexts[1]["e21"], int) and contexts[1]["mixed"] == 123456789.125
    assert contexts[2]["third"] == 0.1 + 0.2 and contexts[2]["sub"] == 5e-324
    assert contexts[3]["text"] == TRICKY[3]["text"]
    assert contexts[4] == TRICKY[4] and contexts[5] == TRICKY[5]


def test_same_headers_and_line_separators_escaped_as_before(
    api: AgentClient, agent_actor: Actor, model_path: Callable[[], None]
) -> None:
    decision = _decision(agent_actor)
    url = f"/api/v1/decisions/{decision.decision_id}/trace?limit=7"
    fast = api.get(url)
    model_path()
    slow = api.get(url)
    assert fast.status_code == slow.status_code == 200
    varying = {"Date", "X-Request-ID", "Content-Length"}
    assert {k: v for k, v in fast.headers.items() if k not in varying} == {
        k: v for k, v in slow.headers.items() if k not in varying
    }
    assert int(fast.headers["Content-Length"]) == len(fast.content)
    # DRF escapes U+2028/U+2029 (JSON that is also valid JavaScript); so does the raw page.
    assert b"\xe2\x80\xa8" not in fast.content and b"\\u2028" in fast.content
    assert json.loads(fast.content) == json.loads(slow.content)


def test_an_indented_answer_holds_the_same_values(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    url = f"/api/v1/decisions/{decision.decision_id}/trace"
    indented = api.get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.status_code == 200 and b'\n  "decision_id"' in indented.content
    assert json.loads(indented.content) == _model_path_value(decision)


def test_pages_chain_to_the_whole_trace_like_the_model_path(
    api: AgentClient, agent_actor: Actor, model_path: Callable[[], None]
) -> None:
    decision = _decision(agent_actor)

    def walk() -> list[Any]:
        pages, after = [], 0
        while after is not None:
            body = api.get(f"/api/v1/decisions/{decision.decision_id}/trace?after_seq={after}&limit=5").json()
            pages.append(body)
            after = body["next_after_seq"]
        return pages

    fast = walk()
    model_path()
    assert [p["next_after_seq"] for p in fast] == [5, 10, None]
    assert fast == walk()


def test_another_agent_reads_nothing(
    api: AgentClient, agent_actor: Actor, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    decision = _decision(agent_actor, TRICKY[:1])
    _, other_key = make_agent("other-agent")
    other = AgentClient(other_key)
    response = other.get(f"/api/v1/decisions/{decision.decision_id}/trace")
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "not_found"


@pytest.mark.parametrize(("after_seq", "limit"), [(None, None), (3, 4), (12, 1)])
def test_the_mcp_tool_answers_the_model_paths_values(
    agent_and_key: tuple[Agent, str], agent_actor: Actor, after_seq: Any, limit: Any
) -> None:
    decision = _decision(agent_actor)
    arguments = {"decision_id": decision.decision_id}
    arguments |= {k: v for k, v in (("after_seq", after_seq), ("limit", limit)) if v is not None}
    response = mcp_post(agent_and_key[1], "decision_trace", arguments)
    # PostgreSQL's text passed through (jsonb's spacing inside a payload), not parsed and re-written.
    assert b'"payload":{"context": {' in response.content
    body = json.loads(response.content)
    assert list(body) == ["jsonrpc", "id", "result"] and body["id"] == 1
    result = body["result"]
    assert list(result) == ["content", "structuredContent", "isError"] and result["isError"] is False
    want = _model_path_value(decision, after_seq, limit)
    for got in (result["structuredContent"], json.loads(result["content"][0]["text"])):
        assert got == want and _typed(got) == _typed(want)
    schema = mcp_adapter.global_mcp_server._tool_manager.get_tool("decision_trace").output_schema
    if schema is not None:
        jsonschema.validate(result["structuredContent"], schema)


def test_the_mcp_tool_refuses_another_agent_as_before(
    agent_actor: Actor, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    decision = _decision(agent_actor, TRICKY[:1])
    _, other_key = make_agent("other-agent")
    result = json.loads(mcp_post(other_key, "decision_trace", {"decision_id": decision.decision_id}).content)
    assert result["result"]["isError"] is True
    assert result["result"]["content"][0]["text"].startswith("[not_found]")
