"""An agent's decision is read in one plain statement on PostgreSQL (issue 17, docs/performance.md
section 18): every agent call starts with it, and the ORM's query building cost more CPU than the
query. The row read must be exactly the ORM's, and another agent's decision must stay invisible."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from decisions import selectors
from decisions.models import Decision
from decisions.services import decision_close, decision_create
from tracemem_core.actor import Actor
from tracemem_core.errors import NotFound

pytestmark = pytest.mark.django_db

METADATA = {
    "ticket": "OPS-1",
    "nested": {"list": [1, 2.5, None, True], "astral": "𝄞 \u2028"},
    "big": 2**53 - 1,
}


def _same_row(read: Decision, orm: Decision) -> None:
    for field in Decision._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(orm, field.attname), field.name
    assert read._state.adding is False and read._state.db == "default"


@pytest.mark.parametrize("closed", [False, True])
def test_an_agents_decision_is_read_in_one_plain_statement(make_agent: Any, closed: bool) -> None:
    agent, _ = make_agent()
    actor = Actor.for_agent(agent)
    made = decision_create(
        actor=actor,
        intent="deploy.service.api",
        automation_mode="propose",
        instance="api-1",
        metadata=METADATA,
    )
    if closed:
        decision_close(actor=actor, decision_id=made.decision_id, action="abort", reason="test")
    with CaptureQueriesContext(connection) as queries:
        read = selectors.decision_for(actor, made.decision_id)
    assert [q["sql"] for q in queries] == [
        selectors._READ_SQL.replace("%s", f"'{made.decision_id}'", 1).replace("%s", f"'{agent.agent_id}'", 1)
    ]
    _same_row(read, Decision.objects.get(pk=made.decision_id))
    assert read.agent_id == agent.agent_id


def test_the_locked_read_is_the_same_row(make_agent: Any) -> None:
    agent, _ = make_agent()
    actor = Actor.for_agent(agent)
    made = decision_create(
        actor=actor, intent="deploy.service.api", automation_mode="propose", metadata=METADATA
    )
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        read = selectors.decision_for_update(actor, made.decision_id)
    assert [q["sql"].endswith("FOR UPDATE") for q in queries] == [True]
    _same_row(read, Decision.objects.get(pk=made.decision_id))


def test_another_agents_decision_and_a_missing_one_are_the_same_not_found(make_agent: Any) -> None:
    owner, _ = make_agent()
    other, _ = make_agent()
    made = decision_create(
        actor=Actor.for_agent(owner), intent="deploy.service.api", automation_mode="propose"
    )
    missing = "TMEM_" + "0" * 26
    for decision_id in (made.decision_id, missing):
        with pytest.raises(NotFound) as refused:
            selectors.decision_for(Actor.for_agent(other), decision_id)
        assert refused.value.message == (
            f"decision {decision_id} was not found; check the id returned by decision_create"
        )
