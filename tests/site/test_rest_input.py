"""REST bad input (docs/contract/errors.md): every malformed request is a 4xx with the contract's error body, never a 500.
Also the public endpoints: OpenAPI schema, /healthz, /readyz."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.test import Client

from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient

pytestmark = pytest.mark.django_db


def _error(response: Any, status: int, code: str = "invalid_argument") -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    # docs/contract/errors.md's error object, and the request id an operator finds in the logs (issue 18).
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response["X-Request-ID"]
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _raw_post(api: AgentClient, path: str, raw: bytes | str) -> Any:
    return api.client.generic("POST", path, raw, content_type="application/json", **api.headers)


def _create(api: AgentClient) -> str:
    response = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "propose"}
    )
    assert response.status_code == 201
    return response.json()["decision_id"]


def test_malformed_json_is_400(api: AgentClient) -> None:
    error = _error(_raw_post(api, "/api/v1/decisions", b'{"intent": "a.b",'), 400)
    assert "not valid JSON" in error["message"]
    assert Decision.objects.count() == 0


def test_nan_is_not_json(api: AgentClient) -> None:
    raw = b'{"intent":"a.b","automation_mode":"propose","metadata":{"x":NaN}}'
    _error(_raw_post(api, "/api/v1/decisions", raw), 400)
    assert Decision.objects.count() == 0


def test_body_that_is_a_json_array_is_400(api: AgentClient) -> None:
    error = _error(_raw_post(api, "/api/v1/decisions", b"[1, 2]"), 400)
    assert error["message"] == "request body must be a JSON object"
    assert Decision.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"intent": 5, "automation_mode": "propose"}, "intent", "intent must be a string, got int"),
        ({"intent": "Not Dotted", "automation_mode": "propose"}, "intent", None),
        ({"automation_mode": "propose"}, "intent", "intent is required"),
        (
            {"intent": "a.b", "automation_mode": "propose", "metadata": [1]},
            "metadata",
            "metadata must be a JSON object, got array",
        ),
        (
            {"intent": "a.b", "automation_mode": "propose", "metadata": "x"},
            "metadata",
            "metadata must be a JSON object, got string",
        ),
    ],
)
def test_wrong_types_on_create_are_400_naming_the_field(
    api: AgentClient, payload: dict[str, Any], field: str, message: str | None
) -> None:
    error = _error(api.post("/api/v1/decisions", payload), 400)
    assert error["details"]["field"] == field
    if message is not None:
        assert error["message"] == message
    assert Decision.objects.count() == 0


def test_unknown_automation_mode_lists_the_four_values(api: AgentClient) -> None:
    error = _error(api.post("/api/v1/decisions", {"intent": "a.b", "automation_mode": "yolo"}), 400)
    assert error["details"]["field"] == "automation_mode"
    for mode in ("propose", "approve", "override", "autonomous"):
        assert mode in error["message"]
    assert error["details"]["allowed"] == ["propose", "approve", "override", "autonomous"]
    assert Decision.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"context": {}}, "context must be a non-empty object"),
        ({"context": "x"}, "context must be a JSON object, got string"),
        ({"context": [1]}, "context must be a JSON object, got array"),
        ({}, "context is required"),
    ],
)
def test_bad_context_is_400_and_appends_nothing(
    api: AgentClient, payload: dict[str, Any], message: str
) -> None:
    decision_id = _create(api)
    error = _error(api.post(f"/api/v1/decisions/{decision_id}/context", payload), 400)
    assert error["message"] == message
    assert error["details"]["field"] == "context"
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 1


def test_payload_alias_is_accepted_for_context(api: AgentClient) -> None:
    decision_id = _create(api)
    response = api.post(f"/api/v1/decisions/{decision_id}/context", {"payload": {"step": 1}})
    assert response.status_code == 201
    assert TraceEvent.objects.get(decision_id=decision_id, seq=2).payload == {"context": {"step": 1}}


def test_two_megabyte_body_is_413(api: AgentClient) -> None:
    decision_id = _create(api)
    big = json.dumps({"context": {"blob": "x" * (2 * 1024 * 1024)}})
    error = _error(_raw_post(api, f"/api/v1/decisions/{decision_id}/context", big), 413)
    assert "larger than" in error["message"]
    assert TraceEvent.objects.filter(decision_id=decision_id).count() == 1


def test_bad_close_action_is_400(api: AgentClient) -> None:
    decision_id = _create(api)
    error = _error(api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "finish"}), 400)
    assert error["details"]["field"] == "action"
    assert Decision.objects.get(pk=decision_id).status == "open"


def test_non_json_content_type_is_415(api: AgentClient) -> None:
    response = api.client.post("/api/v1/decisions", "intent=a.b", content_type="text/plain", **api.headers)
    _error(response, 415)


def test_openapi_schema_renders_with_the_decision_operations(db: Any) -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    operations = {
        op["operationId"] for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)
    }
    # Every docs/contract/tools.md tool is a documented REST operation under its tool name.
    assert {
        "capabilities_get",
        "products_list",
        "product_get",
        "decision_create",
        "decision_add_context",
        "decision_get",
        "decision_trace",
        "decision_close",
        "decision_receipt",
        "decision_read",
        "decision_write",
        "decision_evaluate",
        "decision_request_approval",
        "decision_record",
        "decision_search",
    } <= operations
    create = schema["paths"]["/api/v1/decisions"]["post"]
    assert create["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert Client().get("/api/docs/").status_code == 200


def test_openapi_schema_generates_without_warnings(db: Any) -> None:
    # A warning means an operation is undocumented or documented wrongly; fail rather than drift.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", os.devnull)


def test_healthz_and_readyz(db: Any, redis_url: str) -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert ready.json()["checks"]["database"] == "ok"
    if django_settings.CELERY_BROKER_URL:  # the test settings point at the real Redis
        assert ready.json()["checks"]["broker"] == "ok"


def test_readyz_is_503_when_the_broker_is_unreachable(db: Any, settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from tracemem_site.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        ready = Client().get("/readyz")
    finally:
        app.conf.broker_url = original
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"].startswith("error: ")


def test_secrets_sent_in_metadata_and_context_are_never_stored(api: AgentClient) -> None:
    agent_key = api.headers["HTTP_AUTHORIZATION"].split()[1]
    created = api.post(
        "/api/v1/decisions",
        {
            "intent": "code.refactor.execute",
            "automation_mode": "autonomous",
            "metadata": {"component": "user-service", "db_password": "hunter2", "note": f"key {agent_key}"},
        },
    )
    assert created.status_code == 201
    decision_id = created.json()["decision_id"]
    added = api.post(
        f"/api/v1/decisions/{decision_id}/context",
        {"context": {"Authorization": "Bearer abc", "aws": "AKIAIOSFODNN7EXAMPLE"}, "summary": "ok"},
    )
    assert added.status_code == 201
    decision = Decision.objects.get(pk=decision_id)
    assert decision.metadata == {
        "component": "user-service",
        "db_password": "[redacted]",
        "note": "key [redacted]",  # only the secret inside a longer text is replaced (issue 13)
    }
    events = list(TraceEvent.objects.filter(decision=decision).order_by("seq"))
    assert events[1].payload == {
        "context": {"Authorization": "[redacted]", "aws": "[redacted]"},
        "summary": "ok",
    }
    trace = api.get(f"/api/v1/decisions/{decision_id}/trace").content.decode()
    for secret in ("hunter2", agent_key, "Bearer abc", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in trace
