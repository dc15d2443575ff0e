"""The admin audit log (issue 11): every admin change appends who, what, when and a redacted
before/after to an append-only, hash-chained log, written in the change's own transaction."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from agents.services import registry as agent_registry
from approvals.models import ApprovalRoute, SlackIntegration, WebhookEndpoint
from audit.models import AuditEntry
from policies.models import PolicyGrant as PolicyGrantModel
from products.models import DataSource
from tests.conftest import owner_sql, psql_as_app, superuser_sql
from tests.perm_helpers import ALL_ADMIN_PERMS, TokenClient, make_staff, permission
from tracemem_core.actor import Actor
from tracemem_verify.audit import verify_audit_chain

pytestmark = pytest.mark.django_db
LOG = "/api/v1/admin/audit-log"
DSN = "postgresql://crm:crm-pass-9@db.example.com:5432/crm"
PRODUCT = {
    "operation": "read",
    "table": "customers",
    "fields": [{"name": "id", "column": "id", "type": "integer", "primary_key": True}],
    "allowed_purposes": ["support"],
}
POLICY = {"name": "Cap", "rules": [{"name": "ok", "when": "true", "outcome": "allow"}]}


def _entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.order_by("seq"))


def _whole_log() -> str:
    """Everything the log holds, as text, to prove a secret is nowhere in it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM audit_auditentry e ORDER BY seq")
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def root() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-12345")


@pytest.fixture
def admin() -> TokenClient:
    return TokenClient(make_staff("ada"))


# --- what is recorded -------------------------------------------------------------------------


def test_each_admin_change_through_the_api_appends_one_redacted_entry(admin: TokenClient) -> None:
    ada = admin.user
    steps: list[tuple[str, str]] = []

    def step(response: Any, action: str, object_type: str) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.content
        steps.append((action, object_type))
        return response.json()

    agent = step(admin.post("/api/v1/admin/agents", {"name": "bot"}), "agent.create", "agent")
    step(
        admin.patch(f"/api/v1/admin/agents/{agent['agent_id']}", {"disabled": True}), "agent.update", "agent"
    )
    issued = step(
        admin.post(f"/api/v1/admin/agents/{agent['agent_id']}/keys"), "agent_key.issue", "agent_key"
    )
    rotated = step(
        admin.post(
            f"/api/v1/admin/agents/{agent['agent_id']}/keys/{issued['key_id']}/rotate", {"grace_seconds": 60}
        ),
        "agent_key.rotate",
        "agent_key",
    )
    step(
        admin.post(f"/api/v1/admin/agents/{agent['agent_id']}/keys/{rotated['key_id']}/revoke"),
        "agent_key.revoke",
        "agent_key",
    )
    step(
        admin.post("/api/v1/admin/data-sources", {"source_id": "crm", "dsn": DSN}),
        "data_source.create",
        "data_source",
    )
    step(
        admin.post("/api/v1/admin/products", {"product_id": "crm_v1", **PRODUCT}), "product.create", "product"
    )
    step(admin.patch("/api/v1/admin/products/crm_v1", {"max_rows": 5}), "product.update", "product")
    step(admin.post("/api/v1/admin/products/crm_v1/publish"), "product.publish", "product")
    step(admin.post("/api/v1/admin/products/crm_v1/grants", {"agent_id": "bot"}), "product.grant", "product")
    step(admin.post("/api/v1/admin/policies", {"policy_id": "cap_v1", **POLICY}), "policy.create", "policy")
    step(
        admin.put("/api/v1/admin/policies/cap_v1/draft", {**POLICY, "name": "Cap 2"}),
        "policy.draft_save",
        "policy",
    )
    step(admin.post("/api/v1/admin/policies/cap_v1/publish"), "policy.publish", "policy")
    step(admin.post("/api/v1/admin/policies/cap_v1/grants", {"agent_id": "bot"}), "policy.grant", "policy")
    step(admin.post("/api/v1/admin/policies/cap_v1/retire"), "policy.retire", "policy")
    step(admin.post("/api/v1/admin/routes", {"route_id": "route_x"}), "route.create", "route")
    step(admin.patch("/api/v1/admin/routes/route_x", {"required_approvals": 2}), "route.update", "route")

    entries = _entries()
    # The personal token of the fixture is the first entry (issued by the system).
    assert [(e.action, e.object_type) for e in entries[1:]] == steps
    assert entries[0].action == "personal_token.create" and entries[0].actor_kind == "system"
    for entry in entries[1:]:
        assert (entry.actor_kind, entry.actor_id, entry.actor_name) == ("user", f"user_{ada.pk}", "ada")
    by_action = {e.action: e for e in entries}
    assert by_action["agent.update"].before["disabled"] is False
    assert by_action["agent.update"].after["disabled"] is True
    assert by_action["agent_key.issue"].object_id == issued["key_id"]
    assert by_action["agent_key.issue"].after["prefix"] == issued["key"][:13]
    assert by_action["agent_key.rotate"].after["replaced_by"]["key_id"] == rotated["key_id"]
    assert by_action["data_source.create"].after == {
        "source_id": "crm",
        "name": "crm",
        "kind": "postgresql",
        "dsn_display": "host=db.example.com port=5432 dbname=crm user=crm",
        "write_only_changed": ["dsn"],
    }
    assert (
        by_action["product.update"].before["max_rows"] == 100
        and by_action["product.update"].after["max_rows"] == 5
    )
    assert by_action["product.publish"].after["status"] == "published"
    assert by_action["product.grant"].after == {
        "agent_id": agent["agent_id"],
        "agent": "bot",
        "permissions": ["read"],
    }
    assert by_action["policy.publish"].after["status"] == "published"
    assert by_action["route.update"].before["required_approvals"] == 1
    assert by_action["route.update"].after["required_approvals"] == 2
    # Secrets never reach the log: the agent keys (issued and rotated), the DSN's password, the token.
    text = _whole_log()
    for secret in (issued["key"], rotated["key"], "crm-pass-9", admin.headers["HTTP_AUTHORIZATION"][6:]):
        assert secret not in text
    assert verify_audit_chain([_as_api(e) for e in entries]) is None


def _as_api(entry: AuditEntry) -> dict[str, Any]:
    from audit.selectors import entry_as_dict

    return entry_as_dict(entry)


def test_a_change_that_changes_nothing_is_not_recorded(admin: TokenClient) -> None:
    admin.post("/api/v1/admin/routes", {"route_id": "route_x", "required_approvals": 2})
    count = AuditEntry.objects.count()
    assert admin.patch("/api/v1/admin/routes/route_x", {"required_approvals": 2}).status_code == 200
    assert AuditEntry.objects.count() == count


def test_a_refused_change_leaves_no_entry() -> None:
    client = TokenClient(make_staff("viewer", "agents.view_agent"))
    count = AuditEntry.objects.count()
    assert client.post("/api/v1/admin/agents", {"name": "x"}).status_code == 403
    assert AuditEntry.objects.count() == count


def test_a_rolled_back_change_leaves_no_entry(tmp_path: Path) -> None:
    # apply_config runs every section in one transaction: a later failure undoes the earlier ones,
    # and with them their audit entries.
    config = tmp_path / "tm.yaml"
    config.write_text(
        "data_sources:\n  - {source_id: crm, dsn: 'postgresql://u:p-secret@h/db'}\n"
        "routes:\n  - {route_id: route_x, channels: [{type: pigeon}]}\n"
    )
    with pytest.raises(CommandError):
        call_command("apply_config", str(config))
    assert not DataSource.objects.filter(pk="crm").exists()
    assert not AuditEntry.objects.exists()

    dry = tmp_path / "dry.yaml"
    dry.write_text("routes:\n  - {route_id: route_y}\n")
    call_command("apply_config", str(dry), "--dry-run")
    assert not ApprovalRoute.objects.exists() and not AuditEntry.objects.exists()

    call_command("apply_config", str(dry))
    [entry] = _entries()
    assert (entry.action, entry.object_id, entry.actor_kind, entry.actor_name) == (
        "route.create",
        "route_y",
        "system",
        "apply_config",
    )


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction() -> None:
    from audit.services import audit_record

    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(actor=Actor.system(), action="x.y", object_type="x", object_id="1", after={"a": 1})


# --- integrations and credentials: secrets by name only ---------------------------------------


def test_integration_secrets_are_logged_by_name_only(root: Any) -> None:
    browser = Client()
    browser.force_login(root)
    slack = browser.post(
        "/admin/approvals/slackintegration/add/",
        {
            "name": "main",
            "bot_token": "xoxb-1111-2222-abcdefghij",
            "signing_secret": "sign-9f8e7d",
            "api_base_url": "https://slack.example/api/",
        },
    )
    assert slack.status_code == 302, slack.content.decode()[:1500]
    hook = browser.post(
        "/admin/approvals/webhookendpoint/add/",
        {
            "name": "ops",
            "url": "https://user:pw-in-url@hooks.example/in?token=q-secret",
            "signing_secret": "whsec_c2VjcmV0c2VjcmV0",
        },
    )
    assert hook.status_code == 302, hook.content.decode()[:1500]
    endpoint = WebhookEndpoint.objects.get(name="ops")
    browser.post(
        f"/admin/approvals/webhookendpoint/{endpoint.pk}/change/",
        {"name": "ops", "url": "https://hooks.example/v2", "signing_secret": ""},
    )
    credential = browser.post("/admin/approvals/webhookcredential/add/", {"name": "hook", "user": root.pk})
    assert credential.status_code == 302

    by_action = {e.action: e for e in _entries()}
    assert by_action["slack_integration.create"].after == {
        "name": "main",
        "api_base_url": "https://slack.example/api/",
        "write_only_changed": ["bot_token", "signing_secret"],
    }
    assert by_action["webhook_endpoint.create"].after == {
        "name": "ops",
        "url": "https://hooks.example/in",
        "write_only_changed": ["signing_secret"],
    }
    assert by_action["webhook_endpoint.update"].after == {"name": "ops", "url": "https://hooks.example/v2"}
    assert by_action["webhook_credential.create"].after["user"] == "root"
    text = _whole_log()
    for secret in ("xoxb-1111", "sign-9f8e7d", "pw-in-url", "q-secret", "c2VjcmV0c2VjcmV0", "tmwh_"):
        assert secret not in text.replace(by_action["webhook_credential.create"].after["prefix"], ""), secret
    assert SlackIntegration.objects.get(name="main").bot_token == "xoxb-1111-2222-abcdefghij"


# --- people's permissions and groups in the Django admin ---------------------------------------


def test_permission_and_group_changes_in_the_django_admin_are_logged(root: Any) -> None:
    target = get_user_model().objects.create_user("bob", "bob@example.com", "pw-bob-12345")
    finance = Group.objects.create(name="finance-approvers")
    browser = Client()
    browser.force_login(root)
    page = browser.get(f"/admin/auth/user/{target.pk}/change/")
    form = {
        "username": "bob",
        "email": "bob@example.com",
        "is_active": "on",
        "is_staff": "on",
        "groups": [finance.pk],
        "user_permissions": [permission("approvals.manage_routes").pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    assert page.status_code == 200
    changed = browser.post(f"/admin/auth/user/{target.pk}/change/", form)
    assert changed.status_code == 302, changed.content.decode()[:2000]

    [entry] = [e for e in _entries() if e.object_type == "user"]
    assert (entry.action, entry.object_id, entry.actor_name) == ("user.update", f"user_{target.pk}", "root")
    assert entry.before == {
        "username": "bob",
        "is_active": True,
        "is_staff": False,
        "is_superuser": False,
        "groups": [],
        "permissions": [],
    }
    assert entry.after == {
        **entry.before,
        "is_staff": True,
        "groups": ["finance-approvers"],
        "permissions": ["approvals.manage_routes"],
    }
    assert "pw-bob" not in _whole_log() and "pbkdf2" not in _whole_log()

    browser.post(
        f"/admin/auth/group/{finance.pk}/change/",
        {"name": "finance-approvers", "permissions": [permission("approvals.view_approval").pk]},
    )
    group_entry = AuditEntry.objects.get(object_type="group")
    assert group_entry.after == {
        "name": "finance-approvers",
        "permissions": ["approvals.view_approval"],
        "members": ["bob"],
    }


def test_only_superusers_grant_permissions_in_the_django_admin() -> None:
    # Django's auth.change_user would let its holder make themselves superuser: not here.
    manager = make_staff("manager", "auth.change_user", "auth.view_user")
    browser = Client()
    browser.force_login(manager)
    form = {
        "username": "manager",
        "email": "manager@example.com",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "user_permissions": [permission("agents.manage_agents").pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
    }
    browser.post(f"/admin/auth/user/{manager.pk}/change/", form)
    manager = get_user_model().objects.get(pk=manager.pk)
    assert manager.is_superuser is False
    assert not manager.has_perm("agents.manage_agents")
    assert browser.get("/admin/auth/group/add/").status_code == 403


def test_each_admin_change_through_the_django_admin_appends_its_entry(root: Any) -> None:
    """The Django admin is a door like the API: each change it makes is in the log, by its person."""
    from products.services import definitions as product_definitions
    from tests.approvals.test_outbound_destinations import whsec

    agent = agent_registry.agent_create(actor=Actor.system(), name="bot")
    product_definitions.product_create(actor=Actor.system(), product_id="crm_v1", definition=PRODUCT)
    from policies.services import authoring as policy_authoring

    policy_authoring.policy_create(actor=Actor.system(), policy_id="cap_v1", definition=POLICY)
    policy_authoring.policy_publish(actor=Actor.system(), policy_id="cap_v1")
    first = AuditEntry.objects.order_by("-seq").first()
    start = first.seq if first is not None else 0
    browser = Client()
    browser.force_login(root)

    def ok(response: Any) -> None:
        assert response.status_code == 302, response.content.decode()[:3000]

    ok(browser.post("/admin/products/datasource/add/", {"source_id": "crm", "name": "CRM", "dsn": DSN}))
    route = {
        "route_id": "route_ops",
        "name": "ops",
        "channels": "[]",
        "required_approvals": 1,
        "expires_in_seconds": 3600,
    }
    ok(browser.post("/admin/approvals/approvalroute/add/", route))
    route_pk = ApprovalRoute.objects.get(route_id="route_ops").pk
    ok(browser.post(f"/admin/approvals/approvalroute/{route_pk}/change/", {**route, "required_approvals": 2}))
    ok(browser.post(f"/admin/approvals/approvalroute/{route_pk}/delete/", {"post": "yes"}))
    hook = {"name": "ops", "url": "https://hooks.example.com/tm", "signing_secret": whsec()}
    ok(browser.post("/admin/approvals/webhookendpoint/add/", hook))
    slack = {
        "name": "main",
        "api_base_url": "https://slack.com/api/",
        "bot_token": "xoxb-1",
        "signing_secret": "s1",
    }
    ok(browser.post("/admin/approvals/slackintegration/add/", slack))
    ok(browser.post("/admin/policies/policygrant/add/", {"policy": "cap_v1", "agent": agent.agent_id}))
    grant = PolicyGrantModel.objects.get()
    ok(browser.post(f"/admin/policies/policygrant/{grant.pk}/delete/", {"post": "yes"}))
    ok(
        browser.post(
            "/admin/products/productgrant/add/",
            {"product": "crm_v1", "agent": agent.agent_id, "permissions": '["read"]'},
        )
    )
    ok(
        browser.post(
            "/admin/agents/agent/", {"action": "disable_agents", "_selected_action": [agent.agent_id]}
        )
    )
    browser.post("/admin/agents/agent/", {"action": "issue_key", "_selected_action": [agent.agent_id]})
    key = agent.keys.get()
    ok(browser.post("/admin/agents/agentkey/", {"action": "revoke_keys", "_selected_action": [key.pk]}))
    ok(browser.post("/admin/auth/group/add/", {"name": "ops-approvers"}))

    logged = [(e.action, e.actor_name) for e in AuditEntry.objects.filter(seq__gt=start).order_by("seq")]
    assert logged == [
        (action, "root")
        for action in (
            "data_source.create",
            "route.create",
            "route.update",
            "route.delete",
            "webhook_endpoint.create",
            "slack_integration.create",
            "policy.grant",
            "policy.revoke",
            "product.grant",
            "agent.update",
            "agent_key.issue",
            "agent_key.revoke",
            "group.create",
        )
    ]
    assert (
        "xoxb-1" not in _whole_log()
        and "crm-pass-9" not in _whole_log()
        and hook["signing_secret"] not in _whole_log()
    )


def _people() -> list[Any]:
    return list(get_user_model().objects.values().order_by("pk"))


def test_only_superusers_change_peoples_accounts_in_the_django_admin(root: Any) -> None:
    """Django's auth.change_user also sets anyone's password, email and username: a staff user
    holding it reset a superuser's password and signed in as them (or pointed their email, which
    email links and Slack votes go by, at themselves). Changing accounts is for superusers."""
    reviewer = get_user_model().objects.create_user("rita", "rita@example.com", "pw-rita-12345")
    make_staff(
        "manager",
        "auth.add_user",
        "auth.change_user",
        "auth.delete_user",
        "auth.view_user",
        password="pw-man-1234",
    )
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="manager"))
    before = _people()
    for victim in (root, reviewer):
        reset = browser.post(
            f"/admin/auth/user/{victim.pk}/password/",
            {"password1": "taken-over-987", "password2": "taken-over-987", "usable_password": "true"},
        )
        assert reset.status_code == 403
        form = {"username": victim.username, "email": "manager@example.com", "is_active": "on"}
        assert browser.post(f"/admin/auth/user/{victim.pk}/change/", form).status_code == 403
        assert browser.post(f"/admin/auth/user/{victim.pk}/delete/", {"post": "yes"}).status_code == 403
    added = browser.post(
        "/admin/auth/user/add/",
        {
            "username": "sock",
            "password1": "sock-pass-987",
            "password2": "sock-pass-987",
            "usable_password": "true",
        },
    )
    assert added.status_code == 403
    bulk = browser.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302, 403)
    assert _people() == before
    root.refresh_from_db()
    assert not root.check_password("taken-over-987")
    # Reading stays with auth.view_user; one's own password is changed on the admin's own page.
    assert browser.get(f"/admin/auth/user/{root.pk}/change/").status_code == 200
    own = browser.post(
        "/admin/password_change/",
        {
            "old_password": "pw-man-1234",
            "new_password1": "new-man-pass-987",
            "new_password2": "new-man-pass-987",
        },
    )
    assert own.status_code == 302


def test_a_superuser_resetting_a_password_is_logged_without_the_password(root: Any) -> None:
    reviewer = get_user_model().objects.create_user("rita", "rita@example.com", "pw-rita-12345")
    browser = Client()
    browser.force_login(root)
    reset = browser.post(
        f"/admin/auth/user/{reviewer.pk}/password/",
        {"password1": "reset-by-root-987", "password2": "reset-by-root-987", "usable_password": "true"},
    )
    assert reset.status_code == 302
    [entry] = AuditEntry.objects.filter(object_type="user")
    assert (entry.action, entry.object_id, entry.actor_name) == (
        "user.password_change",
        f"user_{reviewer.pk}",
        "root",
    )
    assert entry.after == {"username": "rita", "sign_in": "password changed"}
    assert "reset-by-root" not in _whole_log() and "pbkdf2" not in _whole_log()


# --- the database protects the log --------------------------------------------------------------


def _one_entry() -> AuditEntry:
    agent_registry.agent_create(actor=Actor.system(), name="bot")
    return AuditEntry.objects.get()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET after = '{}'::jsonb",
        "DELETE FROM audit_auditentry",
        "TRUNCATE audit_auditentry",
    ],
)
def test_the_database_refuses_update_delete_and_truncate(statement: str) -> None:
    entry = _one_entry()
    # The app role the server runs as holds only SELECT and INSERT on the log (docs/security.md).
    with pytest.raises(DatabaseError, match="permission denied for table audit_auditentry"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    # Even its owner, who holds every privilege, meets the triggers, whatever the session says.
    for bypass in (
        "",
        "SET LOCAL pgtrigger.ignore = 'audit_auditentry_append_only'",
        "SET LOCAL session_replication_role = replica",
    ):
        with pytest.raises(psycopg.Error, match="append-only"):
            owner_sql(*filter(None, [bypass, statement]))
    assert AuditEntry.objects.get().hash == entry.hash


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_an_entry_that_does_not_continue_the_chain() -> None:
    """The app role may append (it writes the log), but only the next link: seq = last seq + 1 and
    prev_hash = the last entry's hash, like the trace's events. A gap or a fork is refused, not just
    detected later by verify_audit_log."""
    entry = _one_entry()
    insert = (
        "INSERT INTO audit_auditentry (seq, at, actor_kind, actor_id, actor_name, action, object_type, object_id, "
        "before, after, prev_hash, hash) VALUES ({seq}, now(), 'system', 'system', 'system', 'agent.create', "
        "'agent', 'agt_forged', NULL, '{{}}', '{prev}', '{hash}')"
    )
    for seq, prev in ((entry.seq + 5, entry.hash), (entry.seq + 1, "f" * 64), (entry.seq + 1, "0" * 64)):
        result = psql_as_app(insert.format(seq=seq, prev=prev, hash="e" * 64))
        assert result.returncode != 0
        assert "does not continue the audit log" in result.stderr, result.stderr
    assert list(AuditEntry.objects.values_list("seq", "hash")) == [(entry.seq, entry.hash)]
    assert psql_as_app(insert.format(seq=entry.seq + 1, prev=entry.hash, hash="e" * 64)).returncode == 0


@pytest.mark.django_db(transaction=True)
def test_verify_audit_log_passes_then_names_the_tampered_entry() -> None:
    for name in ("a", "b", "c"):
        agent_registry.agent_create(actor=Actor.system(), name=name)
    out = _run_verify()
    assert out == "OK: 3 audit log entries verified, the hash chain is intact"

    # The table's owner (or the superuser) can switch the trigger off; the chain tells.
    superuser_sql("UPDATE audit_auditentry SET after = jsonb_set(after, '{name}', '\"evil\"') WHERE seq = 2")
    with pytest.raises(CommandError, match="broken"):
        _run_verify()


@pytest.mark.django_db(transaction=True)
def test_verify_audit_log_reports_a_removed_entry() -> None:
    for name in ("a", "b", "c"):
        agent_registry.agent_create(actor=Actor.system(), name=name)
    superuser_sql("DELETE FROM audit_auditentry WHERE seq = 2")
    from audit.selectors import audit_verify

    checked, broken = audit_verify()
    assert checked == 2 and broken is not None and broken.seq == 2
    assert "expected seq 2, found 3" in str(broken)


def _run_verify() -> str:
    from io import StringIO

    out = StringIO()
    call_command("verify_audit_log", stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db(transaction=True)
def test_concurrent_admin_changes_keep_one_linear_chain() -> None:
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            agent_registry.agent_create(actor=Actor.system(), name=f"bot-{index}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    from audit.selectors import audit_verify

    assert audit_verify() == (8, None)
    assert sorted(AuditEntry.objects.values_list("seq", flat=True)) == list(range(1, 9))
    assert sorted(e.after["name"] for e in AuditEntry.objects.all()) == sorted(f"bot-{i}" for i in range(8))


# --- GET /api/v1/admin/audit-log ------------------------------------------------------------------


def test_superusers_read_the_log_newest_first_with_a_verifiable_chain(root: Any) -> None:
    client = TokenClient(root)
    for name in ("a", "b", "c"):
        agent_registry.agent_create(actor=Actor.system("seed"), name=name)

    response = client.get(LOG)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"entries", "next_cursor"} and body["next_cursor"] is None
    entries = body["entries"]
    assert [e["seq"] for e in entries] == [4, 3, 2, 1]  # three agents, and the token of TokenClient
    assert [e["action"] for e in entries] == ["agent.create"] * 3 + ["personal_token.create"]
    assert set(entries[0]) == {
        "seq",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "before",
        "after",
        "prev_hash",
        "hash",
    }
    assert entries[0]["actor"] == {"kind": "system", "id": "system", "name": "seed"}
    assert verify_audit_chain(list(reversed(entries))) is None


def test_filters_and_cursor_pagination(root: Any, admin: TokenClient) -> None:
    admin.post("/api/v1/admin/routes", {"route_id": "route_a"})
    admin.post("/api/v1/admin/routes", {"route_id": "route_b"})
    admin.patch("/api/v1/admin/routes/route_a", {"required_approvals": 2})
    agent_registry.agent_create(actor=Actor.system(), name="bot")
    client = TokenClient(root)

    def seqs(**query: Any) -> list[int]:
        response = client.get(LOG, query)
        assert response.status_code == 200, response.content
        return [e["seq"] for e in response.json()["entries"]]

    all_seqs = seqs()
    route_seqs = [e.seq for e in AuditEntry.objects.filter(object_type="route").order_by("-seq")]
    assert seqs(object="route") == route_seqs and len(route_seqs) == 3
    assert [e["action"] for e in client.get(LOG, {"object": "route:route_a"}).json()["entries"]] == [
        "route.update",
        "route.create",
    ]
    assert seqs(actor="ada") == route_seqs
    assert seqs(actor=f"user_{admin.user.pk}") == route_seqs
    assert seqs(actor="system") == [
        e.seq for e in AuditEntry.objects.filter(actor_id="system").order_by("-seq")
    ]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert seqs(since=future) == []
    assert seqs(until=future) == all_seqs

    first = client.get(LOG, {"limit": 2}).json()
    second = client.get(LOG, {"limit": 2, "cursor": first["next_cursor"]}).json()
    rest = client.get(LOG, {"limit": 2, "cursor": second["next_cursor"]}).json()
    paged = [e["seq"] for page in (first, second, rest) for e in page["entries"]]
    assert paged == all_seqs and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"object": "Route!"}, "object"),
        ({"object": "route:"}, "object"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJiZWZvcmVfc2VxIjogLTF9"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"actr": "x"}, "actr"),
        ({"limit": ["500", "5"]}, "limit"),  # a repeated parameter is refused, not "the last one wins"
        ({"actor": ["user_1", "system"]}, "actor"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(root: Any, query: dict[str, str], field: str) -> None:
    response = TokenClient(root).get(LOG, query)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["details"]["field"] == field


def test_only_active_superusers_read_the_log(root: Any) -> None:
    everything = TokenClient(make_staff("almost-root", *ALL_ADMIN_PERMS))
    refused = everything.get(LOG)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert everything.get(LOG, {"since": "garbage"}).status_code == 403  # refused before any parsing
    token = TokenClient(root)
    get_user_model().objects.filter(pk=root.pk).update(is_active=False)
    assert token.get(LOG).status_code == 401


def test_the_log_is_in_the_openapi_schema() -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    document = json.loads(schema.content)
    operation = document["paths"]["/api/v1/admin/audit-log"]["get"]
    assert operation["operationId"] == "admin_audit_log"
    assert {p["name"] for p in operation["parameters"]} >= {
        "actor",
        "object",
        "since",
        "until",
        "cursor",
        "limit",
    }


# --- the page -----------------------------------------------------------------------------------------


def test_the_audit_page_is_for_superusers_and_linked_from_their_menu(root: Any, admin: TokenClient) -> None:
    admin.post("/api/v1/admin/routes", {"route_id": "route_a"})
    superuser = Client()
    superuser.force_login(root)
    page = superuser.get("/audit/")
    body = page.content.decode()
    assert page.status_code == 200
    assert 'href="/audit/"' in body
    assert "route.create" in body and "route:route_a" in body
    assert "Hash chain intact: 2 entries verified." in body
    filtered = superuser.get("/audit/", {"object": "route"}).content.decode()
    assert "route.create" in filtered and "personal_token.create" not in filtered
    bad = superuser.get("/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since must be an ISO-8601 timestamp" in bad.content.decode()

    staff = Client()
    staff.force_login(admin.user)
    refused = staff.get("/audit/")
    assert refused.status_code == 403
    assert "route.create" not in refused.content.decode()
    assert 'href="/audit/"' not in staff.get("/review/").content.decode()


def test_only_superusers_see_or_change_two_factor_devices_in_the_django_admin(root: Any) -> None:
    """A TOTP device is a sign-in credential: its key lets anyone make a person's codes. Django's
    own otp_totp permissions showed every device's key (and its QR code) and let their holder add
    or remove devices of anyone, a superuser's included."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=root, name="phone", confirmed=True)
    clerk = make_staff(
        "clerk",
        "otp_totp.view_totpdevice",
        "otp_totp.add_totpdevice",
        "otp_totp.change_totpdevice",
        "otp_totp.delete_totpdevice",
    )
    browser = Client()
    browser.force_login(clerk)
    for path in (
        f"/admin/otp_totp/totpdevice/{device.pk}/change/",
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/",
        "/admin/otp_totp/totpdevice/",
    ):
        response = browser.get(path)
        assert response.status_code in (302, 403), (path, response.status_code)
        assert device.key not in response.content.decode()
    assert browser.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"}).status_code == 403
    added = browser.post(
        "/admin/otp_totp/totpdevice/add/", {"user": root.pk, "name": "mine", "key": "00" * 20}
    )
    assert added.status_code == 403
    assert list(TOTPDevice.objects.values_list("pk", "key")) == [(device.pk, device.key)]

    # A superuser removes a lost device (docs/security-signin.md); the key is never shown again.
    boss = Client()
    boss.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-12345"))
    page = boss.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert page.status_code == 200 and device.key not in page.content.decode()
    assert boss.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not TOTPDevice.objects.exists()
