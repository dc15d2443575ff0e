"""Findings of the pre-release audit on the agent doors: each was accepted or misreported before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from decisions.models import Decision, TraceEvent

pytestmark = pytest.mark.django_db

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def test_intent_with_a_trailing_newline_is_refused(api: Any, agent_and_key: Any) -> None:
    response = api.post("/api/v1/decisions", {"intent": "code.refactor\n", "automation_mode": "propose"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_argument"
    assert response.json()["error"]["details"]["field"] == "intent"
    assert not Decision.objects.filter(agent=agent_and_key[0]).exists()


@pytest.mark.parametrize("field", ["actor", "instance", "version"])
def test_a_secret_in_actor_instance_or_version_is_redacted_before_storage(api: Any, field: str) -> None:
    response = api.post(
        "/api/v1/decisions",
        {"intent": "code.refactor.execute", "automation_mode": "propose", field: GITHUB_TOKEN},
    )
    assert response.status_code == 201
    decision = Decision.objects.get(pk=response.json()["decision_id"])
    assert getattr(decision, field) == "[redacted]"
    created = TraceEvent.objects.get(decision=decision, seq=1)
    assert created.payload[field] == "[redacted]"
    assert GITHUB_TOKEN not in api.get(f"/api/v1/decisions/{decision.decision_id}/trace").content.decode()


def test_a_personal_token_header_on_the_agent_api_is_malformed_not_missing(api: Any) -> None:
    response = api.client.get("/api/v1/capabilities", HTTP_AUTHORIZATION="Token tmpat_whatever")
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "malformed"


def test_a_name_and_its_alias_with_different_values_are_refused(api: Any) -> None:
    created = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    decision_id = created.json()["decision_id"]
    response = api.post(
        f"/api/v1/decisions/{decision_id}/context", {"context": {"a": 1}, "payload": {"b": 2}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "context"
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 1
    same = api.post(f"/api/v1/decisions/{decision_id}/context", {"context": {"a": 1}, "payload": {"a": 1}})
    assert same.status_code == 201


@pytest.mark.parametrize("decision_id", ["abc%00def", "TMEM_lowercase01234567890123456", "TMEM_" + "Z" * 27])
def test_a_malformed_decision_id_in_the_path_is_not_found_never_500(api: Any, decision_id: str) -> None:
    response = api.get(f"/api/v1/decisions/{decision_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/v1/decisions", {"intent": "a.b", "automation_mode": "propose", "metadta": {"x": 1}}),
        ("/api/v1/decisions/{id}/context", {"context": {"a": 1}, "sumary": "typo"}),
        ("/api/v1/decisions/{id}/close", {"action": "abort", "reson": "typo"}),
        ("/api/v1/decisions/{id}/evaluate", {"policy_id": "p", "inputs": {}, "input": {}}),
        ("/api/v1/decisions/{id}/read", {"product": "p", "purpose": "x", "querry": {}}),
        (
            "/api/v1/decisions/{id}/write",
            {"product": "p", "purpose": "x", "mutation": {}, "idempotencykey": "k"},
        ),
        ("/api/v1/decisions/{id}/approvals", {"title": "t", "bogus": 1}),
        (
            "/api/v1/records",
            {
                "title": "t",
                "category": "other",
                "context": "c",
                "decision": "d",
                "rationale": "r",
                "supersede": "x",
            },
        ),
    ],
)
def test_a_field_the_operation_does_not_take_is_refused_and_nothing_is_written(
    api: Any, agent_and_key: Any, path: str, payload: dict[str, Any]
) -> None:
    created = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    decision_id = created.json()["decision_id"]
    decisions_before = Decision.objects.count()
    events_before = TraceEvent.objects.count()
    response = api.post(path.format(id=decision_id), payload)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    unknown = next(name for name in payload if name in error["message"] and name in error["details"]["field"])
    assert error["details"]["field"] == unknown
    assert unknown not in error["details"]["allowed"]
    assert (Decision.objects.count(), TraceEvent.objects.count()) == (decisions_before, events_before)


def _context(api: Any, raw_body: str) -> Any:
    created = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    decision_id = created.json()["decision_id"]
    response = api.client.post(
        f"/api/v1/decisions/{decision_id}/context", raw_body, content_type="application/json", **api.headers
    )
    return decision_id, response


def test_a_secret_pasted_as_an_object_key_is_redacted_key_and_value(api: Any) -> None:
    body = json.dumps({"context": {GITHUB_TOKEN: "v", "step": "ok"}})
    decision_id, response = _context(api, body)
    assert response.status_code == 201
    event = TraceEvent.objects.get(decision_id=decision_id, seq=2)
    assert event.payload["context"] == {"[redacted key 1]": "[redacted]", "step": "ok"}
    assert GITHUB_TOKEN not in api.get(f"/api/v1/decisions/{decision_id}/trace").content.decode()


def test_an_object_key_longer_than_1000_characters_is_cut_with_a_marker(api: Any) -> None:
    decision_id, response = _context(api, json.dumps({"context": {"k" * 1005: 1}}))
    assert response.status_code == 201
    stored = TraceEvent.objects.get(decision_id=decision_id, seq=2).payload["context"]
    assert stored == {"k" * 1000 + "…[truncated 5 chars]": 1}


def test_an_unpaired_surrogate_is_invalid_argument_never_500(api: Any) -> None:
    decision_id, response = _context(api, '{"context": {"note": "x\\ud800y"}}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    assert error["details"]["field"] == "context.note"
    assert "unpaired surrogate" in error["message"]
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 1
