"""decision_record / decision_search (docs/contract/tools.md) through the service layer and the REST door."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agents.models import Agent
from decisions import records
from decisions.models import Decision, DecisionRecord, TraceEvent
from tests.conftest import AgentClient
from tracemem_core.actor import Actor
from tracemem_core.errors import Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.django_db


def _record(actor: Actor, **overrides: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "title": "Use PgBouncer in transaction mode",
        "category": "infra",
        "context": "Django opens one connection per worker thread.",
        "decision": "Put PgBouncer between the app and PostgreSQL.",
        "rationale": "Connection pooling keeps the server below its connection limit under load.",
        "tags": ["postgres", "performance"],
    }
    fields.update(overrides)
    return records.decision_record(actor=actor, **fields)


def _counts() -> tuple[int, int, int]:
    return Decision.objects.count(), DecisionRecord.objects.count(), TraceEvent.objects.count()


def test_record_is_a_committed_decision_with_one_redacted_record_event(agent_actor: Actor) -> None:
    record = _record(
        agent_actor,
        constraints={"api_key": "abc123", "budget": "small"},
        alternatives_considered=["more workers", "Django persistent connections"],
    )

    decision = Decision.objects.get(pk=record.decision_id)
    assert decision.status == "committed"
    assert decision.intent == "decision.record.infra"
    assert decision.closed_at == decision.created_at
    [event] = TraceEvent.objects.filter(decision=decision)
    assert event.type == "record" and event.seq == 1
    assert decision.event_count == 1 and decision.trace_head == event.hash
    assert event.payload == {
        "title": "Use PgBouncer in transaction mode",
        "category": "infra",
        "tags": ["postgres", "performance"],
        "context": "Django opens one connection per worker thread.",
        "decision": "Put PgBouncer between the app and PostgreSQL.",
        "rationale": "Connection pooling keeps the server below its connection limit under load.",
        "alternatives_considered": ["more workers", "Django persistent connections"],
        "constraints": {"api_key": "[redacted]", "budget": "small"},
        "consequences": None,
        "supersedes": None,
    }
    assert record.constraints == {"api_key": "[redacted]", "budget": "small"}
    assert records.record_out(record) == {
        "decision_id": decision.decision_id,
        "status": "committed",
        "created_at": decision.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "closed_at": decision.closed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "title": "Use PgBouncer in transaction mode",
        "category": "infra",
        "tags": ["postgres", "performance"],
        "supersedes": None,
    }


def test_a_secret_looking_rationale_is_never_stored(agent_actor: Actor) -> None:
    record = _record(agent_actor, rationale="ghp_0123456789abcdefghijABCDEFGHIJ012345")
    assert record.rationale == "[redacted]"
    assert TraceEvent.objects.get(decision_id=record.decision_id).payload["rationale"] == "[redacted]"


def test_search_finds_a_record_by_words_in_its_rationale(agent_actor: Actor) -> None:
    wanted = _record(agent_actor)
    _record(
        agent_actor,
        title="Adopt ruff",
        category="convention",
        context="Lint is slow.",
        decision="Use ruff.",
        rationale="One fast tool for lint and format.",
        tags=["lint"],
    )

    # Stemmed full-text search: "pooled connections" matches "Connection pooling".
    found = records.decision_search(actor=agent_actor, query="pooled connections")
    assert [r.decision_id for r in found] == [wanted.decision_id]
    assert records.decision_search(actor=agent_actor, query="kubernetes") == []


def test_search_is_newest_first_with_default_limit_20(agent_actor: Actor) -> None:
    made = [_record(agent_actor, title=f"Decision {i}").decision_id for i in range(22)]
    found = records.decision_search(actor=agent_actor)
    assert [r.decision_id for r in found] == list(reversed(made))[:20]
    assert len(records.decision_search(actor=agent_actor, limit=100)) == 22


@pytest.mark.parametrize("limit", [101, 0, -1, "many", True, 2.5])
def test_search_limit_outside_1_to_100_is_invalid_argument(agent_actor: Actor, limit: Any) -> None:
    with pytest.raises(InvalidArgument) as raised:
        records.decision_search(actor=agent_actor, limit=limit)
    assert raised.value.code == "invalid_argument" and raised.value.field == "limit"


def test_tags_filter_requires_every_tag(agent_actor: Actor) -> None:
    both = _record(agent_actor, tags=["postgres", "performance"])
    _record(agent_actor, tags=["postgres"])
    _record(agent_actor, tags=["performance", "cache"])

    found = records.decision_search(actor=agent_actor, tags=["performance", "postgres"])
    assert [r.decision_id for r in found] == [both.decision_id]
    assert len(records.decision_search(actor=agent_actor, tags=["postgres"])) == 2


def test_category_filter_and_invalid_category(agent_actor: Actor) -> None:
    infra = _record(agent_actor)
    _record(agent_actor, category="schema")
    assert [r.decision_id for r in records.decision_search(actor=agent_actor, category="infra")] == [
        infra.decision_id
    ]
    with pytest.raises(InvalidArgument) as raised:
        records.decision_search(actor=agent_actor, category="security")
    assert str(raised.value) == (
        "[invalid_argument] category must be one of architecture, dependency, schema, api_design, infra, "
        "tradeoff, convention, other; got 'security'"
    )


def test_supersession_chain_reads_both_ways(agent_actor: Actor) -> None:
    first = _record(agent_actor, title="v1")
    second = _record(agent_actor, title="v2", supersedes=first.decision_id)
    third = _record(agent_actor, title="v3", supersedes=second.decision_id)

    out = {r["title"]: r for r in records.search_out(records.decision_search(actor=agent_actor))["results"]}
    assert (out["v1"]["supersedes"], out["v1"]["superseded_by"]) == (None, second.decision_id)
    assert (out["v2"]["supersedes"], out["v2"]["superseded_by"]) == (first.decision_id, third.decision_id)
    assert (out["v3"]["supersedes"], out["v3"]["superseded_by"]) == (second.decision_id, None)
    assert TraceEvent.objects.get(decision_id=third.decision_id).payload["supersedes"] == second.decision_id
    assert [r.title for r in records.decision_search(actor=agent_actor, status="active")] == ["v3"]
    assert [r.title for r in records.decision_search(actor=agent_actor, status="superseded")] == ["v2", "v1"]


def test_superseding_an_already_superseded_record_is_a_conflict_and_writes_nothing(
    agent_actor: Actor,
) -> None:
    first = _record(agent_actor, title="v1")
    second = _record(agent_actor, title="v2", supersedes=first.decision_id)
    before = _counts()
    with pytest.raises(Conflict) as raised:
        _record(agent_actor, title="v2-bis", supersedes=first.decision_id)
    assert str(raised.value) == (
        f"[conflict] record {first.decision_id} is already superseded by {second.decision_id}; "
        "supersede that one instead"
    )
    assert _counts() == before


def test_another_agents_records_are_invisible_and_cannot_be_superseded(
    agent_actor: Actor, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    theirs = _record(agent_actor, title="theirs")
    other = Actor.for_agent(make_agent("other-agent")[0])

    assert records.decision_search(actor=other) == []
    assert records.decision_search(actor=other, query="pooling") == []
    before = _counts()
    with pytest.raises(NotFound):
        _record(other, supersedes=theirs.decision_id)
    assert _counts() == before


def test_superseding_a_decision_that_is_not_a_record_is_not_found(api: AgentClient) -> None:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    response = api.post(
        "/api/v1/records",
        {
            "title": "t",
            "category": "other",
            "context": "c",
            "decision": "d",
            "rationale": "r",
            "supersedes": did,
        },
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_rest_record_then_search_with_filters(api: AgentClient) -> None:
    created = api.post(
        "/api/v1/records",
        {
            "title": "Use UUIDv7 keys",
            "category": "schema",
            "context": "Keys must sort by time.",
            "decision": "UUIDv7 primary keys.",
            "rationale": "Monotonic identifiers keep btree inserts local.",
            "tags": ["Postgres", "ids"],
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (
        body["status"] == "committed" and body["tags"] == ["postgres", "ids"] and body["supersedes"] is None
    )

    found = api.get(
        "/api/v1/records?query=monotonic+identifier&category=schema&tags=ids,postgres&status=committed"
    )
    assert found.status_code == 200
    assert found.json() == {
        "results": [
            {
                "decision_id": body["decision_id"],
                "title": "Use UUIDv7 keys",
                "category": "schema",
                "tags": ["postgres", "ids"],
                "status": "committed",
                "intent": "decision.record.schema",
                "created_at": body["created_at"],
                "supersedes": None,
                "superseded_by": None,
            }
        ],
        "count": 1,
    }
    assert api.get("/api/v1/records?tags=ids&tags=cache").json() == {"results": [], "count": 0}
    too_many = api.get("/api/v1/records?limit=101")
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "invalid_argument"
    assert too_many.json()["error"]["details"]["field"] == "limit"


@pytest.mark.parametrize(
    ("missing", "field"), [("title", "title"), ("rationale", "rationale"), ("category", "category")]
)
def test_record_missing_a_required_field_is_invalid_argument_and_writes_nothing(
    api: AgentClient, missing: str, field: str
) -> None:
    payload = {"title": "t", "category": "other", "context": "c", "decision": "d", "rationale": "r"}
    del payload[missing]
    before = _counts()
    response = api.post("/api/v1/records", payload)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_argument",
        "message": f"{field} is required",
        "details": {"field": field},
    }
    assert _counts() == before


def test_record_chain_lists_the_whole_supersession_chain_oldest_first(agent_actor: Actor) -> None:
    first = _record(agent_actor, title="v1")
    second = _record(agent_actor, title="v2", supersedes=first.decision_id)
    third = _record(agent_actor, title="v3", supersedes=second.decision_id)
    plain = Decision.objects.create(
        agent=agent_actor.agent, intent="code.refactor.execute", automation_mode="autonomous"
    )

    for member in (first, second, third):
        assert [r.title for r in records.record_chain(member)] == ["v1", "v2", "v3"]
    assert records.record_of(second.decision) == second
    assert records.record_of(plain) is None


@pytest.mark.django_db(transaction=True)
def test_a_records_text_cannot_be_rewritten_and_an_edit_behind_tracemems_back_is_reported(
    agent_actor: Actor, capsys: Any
) -> None:
    """A record's searchable row repeats its record event. The app role used to be able to UPDATE
    it (what the decision page, decision_get and search show) with nothing noticing; now the row is
    append-only, and a superuser's edit is named by verify_traces and the decision page's badge."""
    from django.core.management import CommandError, call_command
    from django.test import Client

    from tests.conftest import psql_as_app, superuser_sql
    from tests.perm_helpers import make_staff

    record = _record(agent_actor)
    for sql in (
        "UPDATE decisions_decisionrecord SET rationale = 'We never said that.'",
        "DELETE FROM decisions_decisionrecord",
    ):
        result = psql_as_app(sql)
        assert (
            result.returncode != 0 and "permission denied for table decisions_decisionrecord" in result.stderr
        )
    assert DecisionRecord.objects.get(pk=record.pk).rationale == record.rationale

    superuser_sql(
        "UPDATE decisions_decisionrecord SET rationale = 'We never said that.' WHERE decision_id = %s",
        params=[record.decision_id],
    )
    problem = (
        "its record row says rationale 'We never said that.' but its record event (seq 1) says "
        f"{record.rationale!r}"
    )
    with pytest.raises(CommandError):
        call_command("verify_traces", "--decision", record.decision_id)
    assert problem in capsys.readouterr().err
    browser = Client()
    browser.force_login(make_staff("auditor", "decisions.view_decision"))
    page = browser.get(f"/decisions/{record.decision_id}/").content.decode()
    assert 'status-broken" id="chain-badge"' in page and "its record row says rationale" in page


def test_a_tag_postgresql_cannot_store_is_refused_naming_the_field(db: Any, make_agent: Any) -> None:
    """Found by the fuzzer: a NUL in ``tags`` of GET /api/v1/records was a 500."""
    _, key = make_agent()
    response = AgentClient(key).get("/api/v1/records?tags=a%00b")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "tags"
