"""``decision_create`` writes the decision's row in plain SQL on PostgreSQL (issue 17): the row holds
exactly what the ORM would have stored, for every field, and the create is one statement: the row
and its created event in one INSERT (test_create_one_statement.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.models import Decision, TraceEvent
from decisions.services import decision_create
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db

METADATA = {
    "ticket": "OPS-1",
    "nested": {"list": [1, 2.5, None, True], "astral": "𝄞 \u2028"},
    "big": 2**53 - 1,
    "neg": -0.5e-7,
}


@pytest.mark.parametrize("instance,version", [(None, None), ("api-1", "2.4.0")])
def test_the_row_holds_what_the_orm_would_have_written(make_agent: Any, instance: Any, version: Any) -> None:
    agent, _ = make_agent()
    with CaptureQueriesContext(connection) as queries:
        made = decision_create(
            actor=Actor.for_agent(agent),
            intent="deploy.service.api",
            automation_mode="propose",
            instance=instance,
            version=version,
            metadata=METADATA,
        )
    inserts = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "WITH"))]
    assert len(inserts) == 1 and "decisions_decision" in inserts[0] and "decisions_traceevent" in inserts[0]
    row = Decision.objects.get(pk=made.pk)
    for field in Decision._meta.concrete_fields:
        assert getattr(row, field.attname) == getattr(made, field.attname), field.name
    assert (row.status, row.automation_mode, row.event_count) == ("open", "propose", 1)
    assert (row.instance, row.version, row.metadata) == (instance, version, METADATA)
    assert row.created_at == made.created_at and row.closed_at is None
    assert row.trace_head == TraceEvent.objects.get(decision=row, seq=1).hash
