"""decision_record keeps an ADR's text whole up to 20,000 characters and refuses longer text
(never a silent cut), while still redacting secrets (docs/contract/tools.md, docs/contract/redaction.md; docs/records.md)."""

from __future__ import annotations

from typing import Any

import pytest

from decisions import records
from decisions.models import Decision, DecisionRecord, TraceEvent
from tests.conftest import AgentClient
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument
from tracemem_core.redaction import redact

pytestmark = pytest.mark.django_db

LONG = ("We compared three pooling strategies under load. " * 400)[:15_000]


def _record(actor: Actor, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "title": "Use PgBouncer in transaction mode",
        "category": "infra",
        "context": "Django opens one connection per worker thread.",
        "decision": "Put PgBouncer between the app and PostgreSQL.",
        "rationale": "Pooling keeps the server below its connection limit.",
    }
    fields.update(overrides)
    return records.decision_record(actor=actor, **fields)


def _counts() -> tuple[int, int, int]:
    return Decision.objects.count(), DecisionRecord.objects.count(), TraceEvent.objects.count()


def test_long_record_text_is_stored_whole(agent_actor: Actor) -> None:
    notes = "n" * 5_000
    record = _record(
        agent_actor,
        context=LONG,
        rationale=LONG + "!",
        alternatives_considered=[{"option": "persistent connections", "notes": notes}],
    )

    assert (len(record.context), len(record.rationale)) == (15_000, 15_001)
    assert record.context == LONG and record.rationale == LONG + "!"
    assert record.alternatives_considered == [{"option": "persistent connections", "notes": notes}]
    payload = TraceEvent.objects.get(decision_id=record.decision_id).payload
    assert payload["context"] == LONG and payload["rationale"] == LONG + "!"
    assert payload["alternatives_considered"][0]["notes"] == notes


def test_text_at_the_limit_is_kept_and_one_more_character_is_refused(agent_actor: Actor) -> None:
    assert len(_record(agent_actor, decision="d" * 20_000).decision_text) == 20_000
    before = _counts()

    with pytest.raises(InvalidArgument) as refused:
        _record(agent_actor, decision="d" * 20_001)

    assert refused.value.code == "invalid_argument"
    assert refused.value.field == "decision"
    assert str(refused.value) == "[invalid_argument] decision must be at most 20000 characters, got 20001"
    assert _counts() == before


def test_a_long_string_inside_a_json_field_is_refused_naming_its_path(agent_actor: Actor) -> None:
    before = _counts()

    with pytest.raises(InvalidArgument) as refused:
        _record(agent_actor, consequences={"risks": ["fine", "x" * 20_001]})

    assert refused.value.field == "consequences.risks[1]"
    assert "consequences.risks[1] must be at most 20000 characters, got 20001" in str(refused.value)
    assert _counts() == before


def test_a_secret_in_long_record_text_is_still_redacted(agent_actor: Actor) -> None:
    record = _record(agent_actor, context=LONG + " token ghp_0123456789abcdefghijABCDEFGHIJ012345")
    # Only the secret is replaced; the long text around it survives whole (issue 13).
    assert record.context == LONG + " token [redacted]"
    assert (
        TraceEvent.objects.get(decision_id=record.decision_id).payload["context"]
        == LONG + " token [redacted]"
    )


def test_rest_record_over_the_limit_is_400_naming_field_and_limit(api: AgentClient) -> None:
    before = _counts()
    response = api.post(
        "/api/v1/records",
        {"title": "t", "category": "other", "context": "c", "decision": "d", "rationale": "r" * 20_001},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    assert error["message"] == "rationale must be at most 20000 characters, got 20001"
    assert _counts() == before


def test_redaction_elsewhere_still_cuts_at_1000_characters() -> None:
    assert redact("a" * 1500, field="summary") == "a" * 1000 + "…[truncated 500 chars]"
    assert redact({"x": "a" * 1500}, field="context", max_string=2000) == {"x": "a" * 1500}
    assert redact("b" * 2500, max_string=2000) == "b" * 2000 + "…[truncated 500 chars]"
