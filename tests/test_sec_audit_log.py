"""The admin audit log (issue 11): every admin change appends who, what, when and a redacted
before/after to an append-only, hash-chained log, written in the change's own transaction."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from agents import services as agent_services
from approvals.models import ApprovalRoute, SlackIntegration, WebhookEndpoint
from audit.models import AuditEntry
from products.models import DataSource
from tests.perm_helpers import ALL_ADMIN_PERMS, TokenClient, make_staff, permission
from tracemem_site.actor import Actor
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
    step(admin.patch("/api/v1/admin/routes/route_x", {"allow_agent_owner": True}), "route.update", "route")

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
    assert by_action["route.update"].before["allow_agent_owner"] is False
    assert by_action["route.update"].after["allow_agent_owner"] is True
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


# --- the database protects the log --------------------------------------------------------------


def _one_entry() -> AuditEntry:
    agent_services.agent_create(actor=Actor.system(), name="bot")
    return AuditEntry.objects.get()


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
    for bypass in (
        "",
        "SET LOCAL pgtrigger.ignore = 'audit_auditentry_append_only'",
        "SET LOCAL session_replication_role = replica",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            if bypass:
                cursor.execute(bypass)
            cursor.execute(statement)
    assert AuditEntry.objects.get().hash == entry.hash


def test_verify_audit_log_passes_then_names_the_tampered_entry() -> None:
    for name in ("a", "b", "c"):
        agent_services.agent_create(actor=Actor.system(), name=name)
    out = _run_verify()
    assert out == "OK: 3 audit log entries verified, the hash chain is intact"

    # The table's owner (here: the test database user) can switch the trigger off; the chain tells.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_auditentry_append_only")
        try:
            cursor.execute(
                "UPDATE audit_auditentry SET after = jsonb_set(after, '{name}', '\"evil\"') WHERE seq = 2"
            )
        finally:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE ALWAYS TRIGGER audit_auditentry_append_only")
    with pytest.raises(CommandError, match="broken"):
        _run_verify()


def test_verify_audit_log_reports_a_removed_entry() -> None:
    for name in ("a", "b", "c"):
        agent_services.agent_create(actor=Actor.system(), name=name)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_auditentry_append_only")
        try:
            cursor.execute("DELETE FROM audit_auditentry WHERE seq = 2")
        finally:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE ALWAYS TRIGGER audit_auditentry_append_only")
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
            agent_services.agent_create(actor=Actor.system(), name=f"bot-{index}")
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
        agent_services.agent_create(actor=Actor.system("seed"), name=name)

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
    agent_services.agent_create(actor=Actor.system(), name="bot")
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
