"""Issue 13.7: a vote on an approval the person cannot see is 404 (no route named), people who cannot
vote (the agent's owner) are not emailed vote links, and the receipt-keys endpoint's OpenAPI type
matches what it returns."""

from __future__ import annotations

import email
from typing import Any

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from agents.services import tokens as agent_tokens
from approvals.models import Approval, Vote
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tests.approvals.test_channels import Recorder, deliver_all, smtp  # noqa: F401 - smtp is a fixture
from tests.conftest import AgentClient
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db


def test_voting_on_an_approval_one_cannot_see_is_not_found_and_names_no_route(api: Any) -> None:
    make_route("route_secret_board")
    outsider = make_reviewer("outsider", Group.objects.create(name="elsewhere"))
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_secret_board").json()[
        "approval_id"
    ]
    for vote in (outsider.approve, outsider.reject):
        response = vote(approval_id, "looks fine")
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
        assert "route_secret_board" not in response.content.decode()
    unknown = outsider.approve("appr_01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    assert not Vote.objects.exists() and Approval.objects.get(pk=approval_id).status == "pending"

    browser = Client()
    browser.force_login(outsider.user)
    page = browser.post(f"/review/{approval_id}/vote/", {"decision": "approve"})
    assert page.status_code == 404 and b"route_secret_board" not in page.content
    assert not Vote.objects.exists()


def test_a_reviewer_who_can_see_but_not_vote_still_learns_why(api: Any, make_agent: Any) -> None:
    route = make_route("route_finance")
    owner = make_reviewer("olga", route.approver_group)
    _, key = make_agent("owned-agent", owner=owner.user)
    owned = AgentClient(key)
    decision_id = open_decision(owned)
    approval_id = request_approval(owned, decision_id, approval_route_id="route_finance").json()[
        "approval_id"
    ]
    refused = owner.approve(approval_id)
    assert refused.status_code == 403 and "You own the agent" in refused.json()["error"]["message"]


def test_the_agents_owner_is_not_emailed_a_vote_link(
    smtp: Recorder,  # noqa: F811 - the fixture imported above
    make_agent: Any,
) -> None:
    route = make_route("route_finance", channels=[{"type": "email"}])
    owner = make_reviewer("olga", route.approver_group)
    make_reviewer("rita", route.approver_group)
    _, key = make_agent("owned-agent", owner=owner.user)
    owned = AgentClient(key)
    decision_id = open_decision(owned)
    approval_id = request_approval(owned, decision_id, approval_route_id="route_finance").json()[
        "approval_id"
    ]
    [delivery] = deliver_all(approval_id)
    assert delivery.status == "delivered"
    assert [rcpt for rcpt, _ in smtp.messages] == [["rita@example.com"]]
    assert delivery.external_ref["sent_to"] == [get_user_model().objects.get(username="rita").pk]


def test_an_owner_named_in_to_is_still_not_emailed_a_vote_link(
    smtp: Recorder,  # noqa: F811 - the fixture imported above
    make_agent: Any,
) -> None:
    route = make_route("route_finance", channels=[{"type": "email", "to": ["olga", "rita@example.com"]}])
    owner = make_reviewer("olga", route.approver_group)
    make_reviewer("rita", route.approver_group)
    _, key = make_agent("owned-agent", owner=owner.user)
    owned = AgentClient(key)
    approval_id = request_approval(owned, open_decision(owned), approval_route_id="route_finance").json()[
        "approval_id"
    ]
    deliver_all(approval_id)
    assert [rcpt for rcpt, _ in smtp.messages] == [["rita@example.com"]]
    assert "olga" not in email.message_from_bytes(smtp.messages[0][1])["To"]


def as_json_schema(openapi: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema (``type: [T, "null"]``)."""
    if isinstance(openapi, dict):
        out = {k: as_json_schema(v) for k, v in openapi.items() if k != "nullable"}
        if openapi.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(openapi, list):
        return [as_json_schema(v) for v in openapi]
    return openapi


def test_the_receipt_keys_schema_matches_what_the_endpoint_returns() -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    agent_tokens.personal_token_create(actor=Actor.system(), user=admin)
    schema = Client().get("/api/schema/?format=json").json()
    operation = schema["paths"]["/.well-known/tracemem/receipt-keys"]["get"]
    declared = operation["responses"]["200"]["content"]["application/json"]["schema"]
    body = Client().get("/.well-known/tracemem/receipt-keys").json()
    assert isinstance(body, list) and body, body
    jsonschema.validate(body, as_json_schema({**declared, "components": schema["components"]}))
    assert declared["type"] == "array"
    item = declared["items"]
    if "$ref" in item:
        item = schema["components"]["schemas"][item["$ref"].rsplit("/", 1)[1]]
    assert set(item["properties"]) == {"key_id", "algorithm", "public_key", "valid_from", "valid_to"}


# --- numbers typed by people: "²" passes str.isdigit() but not int() -----------------------------

SUPERSCRIPT_TWO = "²"


def test_unicode_digits_anywhere_a_number_is_typed_are_refused_not_a_server_error(
    make_agent: Any,
) -> None:
    from policies.services import authoring as policy_services
    from tests.ui_scenario import REFUND_POLICY

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    agent, key_secret = make_agent("digits")
    key = agent.keys.get()
    system = Actor.system("test")
    policy_services.policy_create(actor=system, policy_id="refunds", definition=REFUND_POLICY)
    policy_services.policy_publish(actor=system, policy_id="refunds")
    policy_services.policy_draft_save(actor=system, policy_id="refunds", definition=REFUND_POLICY)
    token = agent_tokens.personal_token_create(actor=system, user=admin).secret
    browser = Client(raise_request_exception=False)
    browser.force_login(admin)
    api = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")

    token_page = browser.post(
        "/account/tokens/", {"name": "x", "expires_in_days": SUPERSCRIPT_TWO}, follow=True
    )
    assert token_page.status_code == 200 and "whole number from 1 to 3650" in token_page.content.decode()
    rotate = browser.post(
        f"/agents/{agent.agent_id}/keys/{key.key_id}/rotate/", {"grace_seconds": SUPERSCRIPT_TWO}, follow=True
    )
    assert rotate.status_code == 200 and "grace_seconds" in rotate.content.decode()
    diff = browser.get(f"/policies/refunds/?a={SUPERSCRIPT_TWO}&b=1")
    assert diff.status_code == 200
    audit = api.get(f"/api/v1/admin/audit-log?limit={SUPERSCRIPT_TWO}")
    assert audit.status_code == 400 and audit.json()["error"]["details"]["field"] == "limit"
    source = api.post(
        "/api/v1/admin/data-sources",
        {"source_id": "replica", "dsn": f"host=127.0.0.1 port={SUPERSCRIPT_TWO} dbname=x user=u"},
        content_type="application/json",
    )
    assert source.status_code == 400 and "dsn port must be one number" in source.json()["error"]["message"]
    search = AgentClient(key_secret).get(f"/api/v1/records?limit={SUPERSCRIPT_TWO}")
    assert search.status_code == 400 and search.json()["error"]["details"]["field"] == "limit"
    for bad_key in (f"key_{SUPERSCRIPT_TWO}", "key_" + "9" * 25):
        revoke = api.post(f"/api/v1/admin/agents/{agent.agent_id}/keys/{bad_key}/revoke")
        assert revoke.status_code == 404 and revoke.json()["error"]["code"] == "not_found", revoke.content
    assert not key.__class__.objects.filter(revoked_at__isnull=False).exists()
