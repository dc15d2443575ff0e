"""Trace reads without a model object per event (issue 17) give exactly the events as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from decisions import selectors, services
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient
from tracemem_core.actor import Actor
from tracemem_verify.chain import verify_chain

pytestmark = pytest.mark.django_db

AWKWARD: list[dict[str, Any]] = [
    {"float": 1.0, "small": 1e-7, "neg": -0.5, "int": 9007199254740991, "digits": "12345678901234567890"},
    {"text": 'naïve → 中文 🚀 \u2028 "quoted" \\ back', "empty": "", "nested": {"a": [1, [2, {"b": None}]]}},
    {"bools": [True, False, None], "keys": {"é": 1, "\U0001f680": 2, "\ue000": 3}},
]


def _decision(actor: Actor) -> Decision:
    decision = services.decision_create(actor=actor, intent="a.b.c", automation_mode="autonomous")
    for context in AWKWARD:
        services.decision_add_context(actor=actor, decision_id=decision.decision_id, context=context)
    services.decision_add_contexts(actor=actor, decision_id=decision.decision_id, contexts=AWKWARD)
    decision.refresh_from_db()
    return decision


@pytest.mark.parametrize(("after_seq", "limit"), [(None, None), (0, 3), (2, 2), (6, 5), (7, 1)])
def test_the_fast_page_equals_the_model_page(agent_actor: Actor, after_seq: Any, limit: Any) -> None:
    decision = _decision(agent_actor)
    fast = selectors.trace_page_dicts(decision, after_seq=after_seq, limit=limit)
    slow = selectors.trace_page(decision, after_seq=after_seq, limit=limit)
    assert fast.events == [selectors.event_as_dict(e) for e in slow.events]
    assert fast.next_after_seq == slow.next_after_seq
    # Same types too (1.0 stays a float, the ints stay ints): the hash depends on them.
    for got, want in zip(fast.events, slow.events, strict=True):
        assert repr(got["payload"]) == repr(want.payload)


def test_timestamps_are_formatted_like_iso_z_to_the_microsecond(agent_actor: Actor) -> None:
    decision = services.decision_create(actor=agent_actor, intent="a.b.c", automation_mode="autonomous")
    for moment in (datetime(2026, 1, 2, 3, 4, 5, 0, UTC), datetime(2026, 12, 31, 23, 59, 59, 999999, UTC)):
        locked = Decision.objects.get(pk=decision.pk)
        services.trace_append(
            decision=locked,
            type="context",
            actor=agent_actor,
            payload={"context": {"a": 1}},
            timestamp=moment,
        )
    decision.refresh_from_db()
    stamps = [e["timestamp"] for e in selectors.trace_page_dicts(decision).events]
    assert stamps[1:] == ["2026-01-02T03:04:05.000000Z", "2026-12-31T23:59:59.999999Z"]


def test_the_trace_door_answers_a_chain_that_verifies(api: AgentClient, agent_actor: Actor) -> None:
    decision = _decision(agent_actor)
    body = api.get(f"/api/v1/decisions/{decision.decision_id}/trace").json()
    assert [e["seq"] for e in body["events"]] == list(range(1, 8))
    assert verify_chain(decision.decision_id, body["events"]) is None
    stored = TraceEvent.objects.get(decision=decision, seq=2)
    assert body["events"][1]["payload"] == stored.payload


def test_numbers_jsonb_writes_out_in_full_read_as_before(agent_actor: Actor) -> None:
    """jsonb stores 1e21 as 1000000000000000000000; read back it is the int json.loads makes of it."""
    decision = services.decision_create(actor=agent_actor, intent="a.b.c", automation_mode="autonomous")
    services.decision_add_context(actor=agent_actor, decision_id=decision.decision_id, context={"big": 1e21})
    decision.refresh_from_db()
    fast = selectors.trace_page_dicts(decision).events
    slow = [selectors.event_as_dict(e) for e in selectors.trace_page(decision).events]
    assert fast == slow and fast[1]["payload"]["context"]["big"] == 10**21
