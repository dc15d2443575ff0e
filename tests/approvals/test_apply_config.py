"""Routes as configuration (apply_config ``routes``) and write-only integration secrets in the admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from approvals.models import ApprovalRoute, SlackIntegration, WebhookEndpoint
from tests.appr_helpers import make_reviewer
from tracemem_core import crypto

pytestmark = pytest.mark.django_db

CONFIG = """
webhook_endpoints:
  - name: ops
    url: https://hooks.invalid/tracemem
    signing_secret: whsec_c2VjcmV0c2VjcmV0c2VjcmV0
routes:
  - route_id: route_finance
    name: Finance
    channels: [{type: email}, {type: webhook, endpoint: ops}]
    approver_group: finance-approvers
    required_approvals: 2
    require_rationale: true
    expires_in_seconds: 3600
  - route_id: route_default
    channels: [{type: email, to: [admin]}]
    default: true
"""


def run(path: Path, *args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue()


def test_apply_config_routes_creates_then_is_idempotent_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text(CONFIG)
    dry = run(path, "--dry-run")
    assert "[dry-run] would create route route_finance" in dry and not ApprovalRoute.objects.exists()
    first = run(path)
    assert "create route route_finance" in first and "create route route_default" in first
    route = ApprovalRoute.objects.get(route_id="route_finance")
    assert (route.required_approvals, route.require_rationale, route.expires_in_seconds) == (2, True, 3600)
    assert route.approver_group.name == "finance-approvers"
    assert [c["type"] for c in route.channels] == ["email", "webhook"]
    assert ApprovalRoute.objects.get(is_default=True).route_id == "route_default"
    second = run(path)
    assert "route route_finance unchanged" in second and "route route_default unchanged" in second


def test_apply_config_rejects_a_bad_route_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - route_id: route_x\n    channels: [{type: pigeon}]\n")
    with pytest.raises(CommandError, match="channels"):
        run(path)
    assert not ApprovalRoute.objects.exists()


def test_integration_secrets_are_write_only_in_the_admin() -> None:
    root = make_reviewer("root", superuser=True)
    integration = SlackIntegration.objects.create(
        name="main", bot_token="xoxb-very-secret-1", signing_secret="sign-secret-2"
    )
    client = Client()
    client.force_login(root.user)
    page = client.get(f"/admin/approvals/slackintegration/{integration.pk}/change/")
    assert page.status_code == 200
    assert b"xoxb-very-secret-1" not in page.content and b"sign-secret-2" not in page.content
    saved = client.post(
        f"/admin/approvals/slackintegration/{integration.pk}/change/",
        {"name": "main", "bot_token": "", "signing_secret": "", "api_base_url": "https://slack.example/api/"},
    )
    assert saved.status_code == 302
    integration.refresh_from_db()
    assert (integration.bot_token, integration.signing_secret) == ("xoxb-very-secret-1", "sign-secret-2")
    assert integration.api_base_url == "https://slack.example/api/"


def test_integration_secrets_are_encrypted_at_rest() -> None:
    slack = SlackIntegration.objects.create(
        name="enc", bot_token="xoxb-at-rest-1", signing_secret="slack-sign-2"
    )
    hook = WebhookEndpoint.objects.create(
        name="enc", url="https://hooks.example/x", signing_secret="whsec_c2VjcmV0"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT bot_token, signing_secret FROM approvals_slackintegration WHERE id = %s", [slack.pk]
        )
        raw_slack = cursor.fetchone()
        cursor.execute("SELECT signing_secret FROM approvals_webhookendpoint WHERE id = %s", [hook.pk])
        raw_hook = cursor.fetchone()
    assert "xoxb-at-rest-1" not in raw_slack[0] and "slack-sign-2" not in raw_slack[1]
    assert "c2VjcmV0" not in raw_hook[0]
    assert crypto.decrypt(raw_slack[0]) == "xoxb-at-rest-1"
    fresh = SlackIntegration.objects.get(pk=slack.pk)
    assert (fresh.bot_token, fresh.signing_secret) == ("xoxb-at-rest-1", "slack-sign-2")
    assert WebhookEndpoint.objects.get(pk=hook.pk).signing_secret == "whsec_c2VjcmV0"


def test_admin_routes_api_creates_reads_patches_and_refuses_non_staff() -> None:
    staff = make_reviewer("root", superuser=True)
    plain = make_reviewer("plain")
    created = staff.post(
        "/api/v1/admin/routes",
        {
            "route_id": "route_ops",
            "channels": [{"type": "email"}],
            "approver_group": "ops",
            "required_approvals": 2,
        },
    )
    assert created.status_code == 201, created.content
    assert created.json() == {
        "route_id": "route_ops",
        "name": "route_ops",
        "channels": [{"type": "email"}],
        "approver_group": "ops",
        "required_approvals": 2,
        "require_rationale": False,
        "expires_in_seconds": 86400,
        "allow_agent_owner": False,
        "default": False,
    }
    assert staff.post("/api/v1/admin/routes", {"route_id": "route_ops"}).json()["error"]["code"] == "conflict"
    patched = Client().patch(
        "/api/v1/admin/routes/route_ops",
        {"require_rationale": True},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {staff.token}",
    )
    assert patched.status_code == 200
    assert (patched.json()["require_rationale"], patched.json()["required_approvals"]) == (True, 2)
    assert staff.get("/api/v1/admin/routes").json()["routes"][0]["route_id"] == "route_ops"
    refused = plain.post("/api/v1/admin/routes", {"route_id": "route_evil"})
    assert refused.status_code == 403 and not ApprovalRoute.objects.filter(route_id="route_evil").exists()
    assert plain.get("/api/v1/admin/routes/route_ops").status_code == 403
