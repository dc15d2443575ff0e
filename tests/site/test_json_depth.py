"""Issue 13.1: JSON nested deeper than the documented limit is refused on every door that parses
JSON, for any depth up to the body-size limit, and never reaches Python's recursion limit."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from slack_sdk.signature import SignatureVerifier

from agents.services import tokens as agent_tokens
from approvals.models import SlackIntegration
from approvals.services import credentials as approval_credentials
from decisions.models import Decision
from tests.appr_helpers import make_route, open_decision, request_approval
from tracemem_core.actor import Actor
from tracemem_core.safejson import MAX_DEPTH_CEILING, nesting_exceeds

pytestmark = pytest.mark.django_db

DEEP = 100_000


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


BOMBS = {"array": deep_array(DEEP), "object": deep_object(DEEP)}


def assert_rest_refusal(response: Any) -> None:
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    limit = settings.TRACEMEM_MAX_JSON_DEPTH
    assert f"nested deeper than {limit} levels" in error["message"]
    assert error["details"] == {"max_depth": limit}


@pytest.fixture
def no_error_logs(caplog: Any) -> Any:
    caplog.set_level(logging.ERROR)
    yield
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_agent_rest_refuses_a_depth_bomb_with_400(api: Any, shape: str, no_error_logs: Any) -> None:
    assert len(BOMBS[shape]) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = api.client.post(
        "/api/v1/decisions", BOMBS[shape], content_type="application/json", **api.headers
    )
    assert_rest_refusal(response)
    assert not Decision.objects.exists()


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_admin_rest_with_a_personal_token_refuses_a_depth_bomb(shape: str, no_error_logs: Any) -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    token = agent_tokens.personal_token_create(actor=Actor.system(), user=admin).secret
    response = Client().post(
        "/api/v1/admin/agents",
        BOMBS[shape],
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert_rest_refusal(response)


def test_reviewer_session_rest_refuses_a_depth_bomb(no_error_logs: Any) -> None:
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client(enforce_csrf_checks=False)
    client.force_login(get_user_model().objects.get(username="root"))
    response = client.post(
        "/api/v1/approvals/appr_01ARZ3NDEKTSV4RRFFQ69G5FAV/approve",
        BOMBS["array"],
        content_type="application/json",
    )
    assert_rest_refusal(response)


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_mcp_answers_a_depth_bomb_with_a_jsonrpc_error(api: Any, shape: str, no_error_logs: Any) -> None:
    response = api.client.post("/mcp", BOMBS[shape], content_type="application/json", **api.headers)
    assert response.status_code == 400
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None
    assert body["error"]["code"] == -32700
    assert f"nested deeper than {settings.TRACEMEM_MAX_JSON_DEPTH} levels" in body["error"]["message"]


def test_mcp_tool_call_with_a_deep_bomb_inside_its_arguments_is_refused(api: Any, no_error_logs: Any) -> None:
    inner = deep_object(DEEP)
    raw = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"decision_create","arguments":{"intent":"a.b","automation_mode":"propose","metadata":'
        + inner
        + "}}}"
    )
    response = api.client.post("/mcp", raw, content_type="application/json", **api.headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32700
    assert not Decision.objects.exists()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "stock-path"])
def test_mcp_string_argument_holding_a_json_bomb_is_an_invalid_argument(
    api: Any, fast: bool, no_error_logs: Any, monkeypatch: Any
) -> None:
    # FastMCP parses a JSON-looking string argument (a leniency for some clients): a bomb hidden in
    # a string is refused by name instead of crashing the tool with a RecursionError.
    if not fast:
        from tracemem_site.mcp import MCPView

        monkeypatch.setattr(MCPView, "fast_path", lambda self, request: None)
    message = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "decision_create",
            "arguments": {"intent": "a.b", "automation_mode": "propose", "metadata": deep_array(DEEP)},
        },
    }
    response = api.client.post(
        "/mcp",
        json.dumps(message),
        content_type="application/json",
        HTTP_ACCEPT="application/json, text/event-stream",
        **api.headers,
    )
    assert response.status_code == 200, response.content[:300]
    result = response.json()["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert text.startswith("[invalid_argument] metadata ") and "nested deeper than" in text
    assert not Decision.objects.exists()


def test_webhook_resolve_refuses_a_depth_bomb(api: Any, no_error_logs: Any) -> None:
    route = make_route("route_finance")
    reviewer = get_user_model().objects.create_user("hooky", "hooky@example.com", "pw-hooky-123")
    reviewer.groups.add(route.approver_group)
    _, secret = approval_credentials.webhook_credential_create(actor=Actor.system(), user=reviewer)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    response = Client().post(
        f"/api/v1/approvals/{approval_id}/resolve",
        BOMBS["object"],
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert_rest_refusal(response)


def test_slack_interaction_with_a_depth_bomb_is_refused_with_400(no_error_logs: Any) -> None:
    SlackIntegration.objects.create(
        name="main",
        bot_token="xoxb-test-1",
        signing_secret="sl4ck-s3cret",
        api_base_url="http://127.0.0.1:9/",
    )
    body = urlencode({"payload": deep_array(DEEP)})
    assert len(body) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    timestamp = str(int(time.time()))
    signature = SignatureVerifier("sl4ck-s3cret").generate_signature(timestamp=timestamp, body=body)
    response = Client().post(
        "/integrations/slack/interactions",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
        HTTP_X_SLACK_SIGNATURE=signature,
    )
    assert response.status_code == 400
    assert "nested deeper than" in response.json()["text"]


def test_json_at_the_limit_is_accepted_and_one_level_more_is_refused(api: Any) -> None:
    limit = settings.TRACEMEM_MAX_JSON_DEPTH
    # The body object is level 1; metadata's value adds limit - 1 levels: exactly the limit.
    ok = '{"intent":"a.b","automation_mode":"propose","metadata":' + deep_object(limit - 1) + "}"
    assert (
        api.client.post("/api/v1/decisions", ok, content_type="application/json", **api.headers).status_code
        == 201
    )
    too_deep = '{"intent":"a.b","automation_mode":"propose","metadata":' + deep_object(limit) + "}"
    response = api.client.post("/api/v1/decisions", too_deep, content_type="application/json", **api.headers)
    assert_rest_refusal(response)


def test_nesting_check_ignores_brackets_inside_strings() -> None:
    text = json.dumps({"a": "[" * 5000 + "{" * 5000})
    assert not nesting_exceeds(text, 3)
    assert nesting_exceeds(json.dumps([[[[1]]]]), 3)
    assert not nesting_exceeds(json.dumps([[[1]]]), 3)
    assert not nesting_exceeds(json.dumps({"k": '\\"[[[[['}), 1)
    assert MAX_DEPTH_CEILING < 500  # far below Python's recursion limit, whatever the stack depth


# --- every other place JSON (or YAML) enters: one bounded loader ----------------------------------


def deep_block_yaml(depth: int) -> str:
    return "routes:\n" + "".join("  " * (i + 1) + "- \n" for i in range(depth))


@pytest.mark.parametrize(
    "text",
    [
        "routes: " + deep_array(DEEP),
        "routes: " + '{"a": ' * DEEP + "1" + "}" * DEEP,
        deep_block_yaml(3000),
    ],
    ids=["flow-sequence", "flow-mapping", "block-sequence"],
)
def test_apply_config_refuses_yaml_nested_deeper_than_the_limit(text: str, tmp_path: Any) -> None:
    from django.core.management import CommandError, call_command

    from approvals.models import ApprovalRoute

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(CommandError) as exc:
        call_command("apply_config", str(path))
    assert f"is nested deeper than {settings.TRACEMEM_MAX_JSON_DEPTH} levels" in str(exc.value)
    assert not ApprovalRoute.objects.exists()


def test_apply_config_takes_yaml_at_the_depth_limit(tmp_path: Any) -> None:
    from django.core.management import CommandError, call_command

    # The top-level mapping is level 1 and "routes" adds limit - 1 more: exactly the limit, so the
    # loader lets it through and the routes section itself words what is wrong.
    path = tmp_path / "config.yaml"
    path.write_text("routes: " + deep_array(settings.TRACEMEM_MAX_JSON_DEPTH - 1))
    with pytest.raises(CommandError) as exc:
        call_command("apply_config", str(path))
    assert "nested deeper" not in str(exc.value)


def superuser_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("url", "form"),
    [
        (
            "/admin/approvals/approvalroute/add/",
            {"route_id": "r1", "name": "r", "channels": deep_array(DEEP), "required_approvals": "1"},
        ),
        (
            "/admin/products/dataproduct/add/",
            {
                "product_id": "p_v1",
                "name": "p",
                "operation": "read",
                "fields": deep_object(DEEP),
                "allowed_purposes": '["x"]',
                "max_rows": "1",
            },
        ),
    ],
    ids=["route-channels", "product-fields"],
)
def test_django_admin_json_fields_refuse_a_depth_bomb_on_the_form(
    url: str, form: dict[str, str], no_error_logs: Any
) -> None:
    response = superuser_client().post(url, form)
    assert response.status_code == 200, response.content[:300]
    assert f"nested deeper than {settings.TRACEMEM_MAX_JSON_DEPTH} levels" in response.content.decode()


def test_every_json_field_of_the_django_admin_is_the_bounded_one() -> None:
    from django.contrib import admin
    from django.db import models
    from django.test import RequestFactory

    from tracemem_core.safejson import JSONFormField

    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    checked = []
    for model, model_admin in admin.site._registry.items():
        json_names = {f.name for f in model._meta.get_fields() if isinstance(f, models.JSONField)}
        if not json_names or not model_admin.has_add_permission(request):
            continue
        form = model_admin.get_form(request)
        for name in json_names & set(form.base_fields):
            assert isinstance(form.base_fields[name], JSONFormField), f"{model.__name__}.{name}"
            checked.append(f"{model.__name__}.{name}")
    assert "ApprovalRoute.channels" in checked and "DataProduct.fields" in checked


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_offline_verifier_refuses_a_depth_bomb_without_a_traceback(shape: str, tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "receipt.json"
    path.write_text(BOMBS[shape])
    done = subprocess.run(
        [sys.executable, "-m", "tracemem_verify", str(path)], capture_output=True, text=True, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr[-500:]
    assert done.stdout.startswith("FAIL: receipt ") and "is nested deeper than 64 levels" in done.stdout
    assert done.returncode == 1
