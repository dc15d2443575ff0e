"""Permissions, not ``is_staff`` (issue 11): every admin change needs its own Django permission.

Each operation is tried by a staff user who holds every admin permission *except* the one it
needs (refused: 403 naming that permission, nothing changed) and by a staff user holding *only*
that permission (allowed). Through the admin REST API, the HTML pages and the Django admin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from agents.models import Agent, AgentKey
from agents.services import registry as agent_registry
from approvals.models import ApprovalRoute, SlackIntegration, WebhookCredential, WebhookEndpoint
from policies.models import Policy, PolicyGrant, PolicyVersion
from policies.services import authoring as policy_authoring
from products.models import DataProduct, DataSource, ProductGrant
from products.services import definitions as product_definitions
from tests.perm_helpers import ALL_ADMIN_PERMS, TokenClient, grant, make_staff
from tracemem_core.actor import Actor
from tracemem_core.errors import PermissionDenied
from tracemem_core.permissions import PERMISSIONS, require_perm

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("test")
DSN = "postgresql://crm:crm-pass-9@db.example.com:5432/crm"
PRODUCT = {
    "operation": "read",
    "table": "customers",
    "fields": [{"name": "id", "column": "id", "type": "integer", "primary_key": True}],
    "allowed_purposes": ["support"],
}
POLICY = {"name": "Cap", "rules": [{"name": "ok", "when": "true", "outcome": "allow"}]}


@dataclass
class World:
    agent: Agent
    key: AgentKey


@pytest.fixture
def world() -> World:
    agent = agent_registry.agent_create(actor=SYSTEM, name="bot")
    key = agent_registry.agent_key_issue(actor=SYSTEM, agent=agent).key
    product_definitions.product_create(actor=SYSTEM, product_id="crm_customers_v1", definition=PRODUCT)
    product_definitions.product_create(actor=SYSTEM, product_id="crm_customers_v2", definition=PRODUCT)
    product_definitions.product_publish(actor=SYSTEM, product_id="crm_customers_v2")
    policy_authoring.policy_create(actor=SYSTEM, policy_id="cap_v1", definition=POLICY)
    policy_authoring.policy_create(actor=SYSTEM, policy_id="cap_v2", definition=POLICY)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="cap_v2")
    ApprovalRoute.objects.create(route_id="route_finance", name="Finance")
    return World(agent=agent, key=key)


def _state() -> dict[str, list[Any]]:
    """Everything an admin operation could change, to prove a refusal changed nothing."""
    return {
        "agents": list(Agent.objects.values().order_by("pk")),
        "keys": list(AgentKey.objects.values().order_by("pk")),
        "sources": list(DataSource.objects.values().order_by("pk")),
        "products": list(DataProduct.objects.values().order_by("pk")),
        "product_grants": list(ProductGrant.objects.values().order_by("pk")),
        "policies": list(Policy.objects.values().order_by("pk")),
        "versions": list(PolicyVersion.objects.values().order_by("pk")),
        "policy_grants": list(PolicyGrant.objects.values().order_by("pk")),
        "routes": list(ApprovalRoute.objects.values().order_by("pk")),
    }


# (permission, method, path, body, expected status when allowed)
OPERATIONS: list[tuple[str, str, str, Any, int]] = [
    ("agents.manage_agents", "post", "/api/v1/admin/agents", {"name": "new-bot"}, 201),
    ("agents.manage_agents", "patch", "/api/v1/admin/agents/{agent}", {"disabled": True}, 200),
    ("agents.manage_agent_keys", "post", "/api/v1/admin/agents/{agent}/keys", {"name": "ci"}, 201),
    ("agents.manage_agent_keys", "post", "/api/v1/admin/agents/{agent}/keys/{key}/revoke", None, 200),
    ("agents.manage_agent_keys", "post", "/api/v1/admin/agents/{agent}/keys/{key}/rotate", None, 201),
    (
        "products.manage_data_sources",
        "post",
        "/api/v1/admin/data-sources",
        {"source_id": "crm", "dsn": DSN},
        201,
    ),
    (
        "products.define_products",
        "post",
        "/api/v1/admin/products",
        {"product_id": "crm_orders_v1", **PRODUCT},
        201,
    ),
    ("products.define_products", "patch", "/api/v1/admin/products/crm_customers_v1", {"max_rows": 7}, 200),
    ("products.publish_products", "post", "/api/v1/admin/products/crm_customers_v1/publish", None, 200),
    (
        "products.grant_products",
        "post",
        "/api/v1/admin/products/crm_customers_v2/grants",
        {"agent_id": "{agent}"},
        201,
    ),
    ("policies.define_policies", "post", "/api/v1/admin/policies", {"policy_id": "new_v1", **POLICY}, 201),
    ("policies.define_policies", "put", "/api/v1/admin/policies/cap_v1/draft", POLICY, 200),
    ("policies.publish_policies", "post", "/api/v1/admin/policies/cap_v1/publish", None, 200),
    ("policies.publish_policies", "post", "/api/v1/admin/policies/cap_v2/retire", None, 200),
    ("policies.grant_policies", "post", "/api/v1/admin/policies/cap_v2/grants", {"agent_id": "{agent}"}, 201),
    ("approvals.manage_routes", "post", "/api/v1/admin/routes", {"route_id": "route_new"}, 201),
    (
        "approvals.manage_routes",
        "patch",
        "/api/v1/admin/routes/route_finance",
        {"required_approvals": 2},
        200,
    ),
]
IDS = [f"{method.upper()} {path}" for _, method, path, _, _ in OPERATIONS]


def _call(client: TokenClient, world: World, method: str, path: str, body: Any) -> Any:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(agent=world.agent.agent_id, key=world.key.key_id)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return getattr(client, method)(fill(path), fill(body) if body is not None else {})


@pytest.mark.parametrize(("perm", "method", "path", "body", "_ok"), OPERATIONS, ids=IDS)
def test_staff_without_the_permission_is_refused_and_nothing_changes(
    world: World, perm: str, method: str, path: str, body: Any, _ok: int
) -> None:
    others = [p for p in ALL_ADMIN_PERMS if p != perm]
    client = TokenClient(make_staff("almost", *others))
    before = _state()

    response = _call(client, world, method, path, body)

    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["details"]["permission"] == perm
    assert f"you need the permission {perm}" in error["message"]
    assert _state() == before


@pytest.mark.parametrize(("perm", "method", "path", "body", "ok"), OPERATIONS, ids=IDS)
def test_the_one_permission_is_enough(
    world: World, perm: str, method: str, path: str, body: Any, ok: int
) -> None:
    client = TokenClient(make_staff("precise", perm))

    response = _call(client, world, method, path, body)

    assert response.status_code == ok, response.content


def test_a_staff_user_with_no_permission_cannot_read_admin_data(world: World) -> None:
    client = TokenClient(make_staff("bare", "decisions.view_decision"))
    for path, perm in [
        ("/api/v1/admin/agents", "agents.view_agent"),
        (f"/api/v1/admin/agents/{world.agent.agent_id}", "agents.view_agent"),
        ("/api/v1/admin/data-sources", "products.view_datasource"),
        ("/api/v1/admin/products", "products.view_dataproduct"),
        ("/api/v1/admin/policies", "policies.view_policy"),
        ("/api/v1/admin/policies/cap_v2", "policies.view_policy"),
        ("/api/v1/admin/routes", "approvals.view_approvalroute"),
        ("/api/v1/admin/routes/route_finance", "approvals.view_approvalroute"),
    ]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"]["details"]["permission"] == perm, path


def test_view_permissions_read_but_do_not_change(world: World) -> None:
    client = TokenClient(
        make_staff("auditor", "agents.view_agent", "products.view_dataproduct", "policies.view_policy")
    )
    assert [a["name"] for a in client.get("/api/v1/admin/agents").json()["agents"]] == ["bot"]
    assert client.get("/api/v1/admin/products").status_code == 200
    assert client.get("/api/v1/admin/policies/cap_v2").status_code == 200
    before = _state()
    assert client.post("/api/v1/admin/agents", {"name": "x"}).status_code == 403
    assert client.post(f"/api/v1/admin/agents/{world.agent.agent_id}/keys").status_code == 403
    assert _state() == before


def test_an_inactive_superuser_is_refused_by_the_one_helper() -> None:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-12345")
    actor = Actor.for_user(root)
    for perm in PERMISSIONS:
        require_perm(actor, perm)  # an active superuser holds every permission
    root.is_active = False
    root.save()
    inactive = Actor.for_user(get_user_model().objects.get(pk=root.pk))
    for perm in PERMISSIONS:
        with pytest.raises(PermissionDenied) as refused:
            require_perm(inactive, perm)
        assert refused.value.details == {"permission": perm}


def test_an_inactive_superuser_is_refused_at_every_door(world: World) -> None:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-12345")
    token_client = TokenClient(root)
    browser = Client()
    browser.force_login(root)
    get_user_model().objects.filter(pk=root.pk).update(is_active=False)
    before = _state()

    api = token_client.post(f"/api/v1/admin/agents/{world.agent.agent_id}/keys", {"name": "x"})
    page = browser.post(f"/agents/{world.agent.agent_id}/keys/", {"name": "x"})
    session_api = browser.post(f"/api/v1/admin/agents/{world.agent.agent_id}/keys", {}, "application/json")

    assert api.status_code == 401 and api.json()["error"]["details"]["reason"] == "user_inactive"
    assert page.status_code == 302 and page["Location"].startswith("/login/")
    assert session_api.status_code in (401, 403)
    assert _state() == before


# --- agent keys: who may manage which agent's keys --------------------------------------------


def test_an_owner_with_the_own_keys_permission_manages_only_their_agents_keys(world: World) -> None:
    owner = make_staff("olivia", "agents.manage_own_agent_keys")
    mine = agent_registry.agent_create(actor=SYSTEM, name="olivias-bot", owner=owner)
    client = TokenClient(owner)

    issued = client.post(f"/api/v1/admin/agents/{mine.agent_id}/keys", {"name": "ci"})
    assert issued.status_code == 201, issued.content
    rotated = client.post(f"/api/v1/admin/agents/{mine.agent_id}/keys/{issued.json()['key_id']}/rotate")
    assert rotated.status_code == 201
    assert [a["name"] for a in client.get("/api/v1/admin/agents").json()["agents"]] == ["olivias-bot"]

    before = _state()
    other = client.post(f"/api/v1/admin/agents/{world.agent.agent_id}/keys", {"name": "sneaky"})
    assert other.status_code in (403, 404)
    revoke = client.post(f"/api/v1/admin/agents/{world.agent.agent_id}/keys/{world.key.key_id}/revoke")
    assert revoke.status_code in (403, 404)
    assert client.post("/api/v1/admin/agents", {"name": "mine-too"}).status_code == 403
    made_owner = client.patch(f"/api/v1/admin/agents/{mine.agent_id}", {"owner": None})
    assert made_owner.status_code == 403
    assert _state() == before


# --- HTML pages ----------------------------------------------------------------------------------


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_html_pages_refuse_staff_without_permission_and_change_nothing(world: World) -> None:
    browser = _browser(make_staff("bare", "decisions.view_decision"))
    before = _state()
    for path in (
        "/agents/",
        f"/agents/{world.agent.agent_id}/",
        "/policies/",
        "/policies/cap_v2/",
        "/routes/",
    ):
        page = browser.get(path)
        assert page.status_code == 403, path
        assert "you need the permission" in page.content.decode(), path
    assert browser.get("/products/").status_code == 403
    for path, data in [
        ("/agents/create/", {"name": "html-bot"}),
        (f"/agents/{world.agent.agent_id}/keys/", {"name": "html-key"}),
        (f"/agents/{world.agent.agent_id}/keys/{world.key.key_id}/revoke/", {}),
        (f"/agents/{world.agent.agent_id}/keys/{world.key.key_id}/rotate/", {}),
        ("/policies/create/", {"policy_id": "html_v1", "name": "x"}),
        ("/policies/cap_v1/publish/", {}),
        ("/policies/cap_v2/retire/", {}),
        ("/policies/cap_v2/grants/", {"agent_id": world.agent.agent_id}),
    ]:
        assert browser.post(path, data).status_code == 403, path
    assert _state() == before


def test_html_pages_act_with_exactly_the_needed_permission(world: World) -> None:
    keys = _browser(make_staff("kim", "agents.manage_agent_keys"))
    assert keys.post(f"/agents/{world.agent.agent_id}/keys/", {"name": "html-key"}).status_code == 302
    assert AgentKey.objects.filter(agent=world.agent, name="html-key").exists()
    page = keys.get(f"/agents/{world.agent.agent_id}/").content.decode()
    assert 'action="/agents/create/"' not in page  # no agents permission: no create form

    viewer = _browser(make_staff("vic", "policies.view_policy"))
    detail = viewer.get("/policies/cap_v2/").content.decode()
    assert "/policies/cap_v2/retire/" not in detail and 'aria-label="Grant"' not in detail
    assert 'action="/policies/create/"' not in viewer.get("/policies/").content.decode()

    publisher = _browser(make_staff("pat", "policies.publish_policies"))
    assert publisher.post("/policies/cap_v2/retire/").status_code == 302
    assert not PolicyVersion.objects.filter(policy_id="cap_v2", status="published").exists()
    assert publisher.post("/policies/create/", {"policy_id": "p_v1", "name": "x"}).status_code == 403


def test_the_menu_follows_the_permissions(world: World) -> None:
    agents_only = _browser(make_staff("kim", "agents.manage_agent_keys")).get("/review/").content.decode()
    everything = _browser(make_staff("boss", *ALL_ADMIN_PERMS)).get("/review/").content.decode()

    for link in ('href="/agents/"', 'href="/routes/"', 'href="/policies/"', 'href="/products/"'):
        assert link in everything, link
    assert 'href="/agents/"' in agents_only and 'href="/routes/"' not in agents_only
    assert 'href="/policies/"' not in agents_only and 'href="/products/"' not in agents_only


def test_bare_staff_sees_no_admin_menu_entries() -> None:
    page = _browser(make_staff("bare", "decisions.view_decision")).get("/decisions/").content.decode()
    for link in ('href="/agents/"', 'href="/routes/"', 'href="/policies/"', 'href="/products/"'):
        assert link not in page, link


# --- Django admin ---------------------------------------------------------------------------------


def _admin_form_for_agent(**extra: Any) -> dict[str, Any]:
    return {
        "name": "admin-made",
        "description": "",
        "keys-TOTAL_FORMS": "0",
        "keys-INITIAL_FORMS": "0",
        "keys-MIN_NUM_FORMS": "0",
        "keys-MAX_NUM_FORMS": "1000",
        **extra,
    }


def test_django_admin_refuses_staff_without_the_permission(world: World) -> None:
    # Django's own add/change permissions are not enough: the admin asks ours.
    builtin = (
        "agents.add_agent",
        "agents.change_agent",
        "agents.view_agent",
        "agents.view_agentkey",
        "products.add_datasource",
        "products.change_datasource",
        "products.add_dataproduct",
        "products.change_dataproduct",
        "products.add_productgrant",
        "products.change_productgrant",
        "approvals.add_approvalroute",
        "approvals.change_approvalroute",
        "approvals.add_slackintegration",
        "approvals.add_webhookendpoint",
        "approvals.add_webhookcredential",
        "policies.add_policygrant",
    )
    staff = make_staff("djangoish", *builtin)
    browser = _browser(staff)
    before = _state()

    assert browser.post("/admin/agents/agent/add/", _admin_form_for_agent()).status_code == 403
    change = browser.post(
        f"/admin/agents/agent/{world.agent.agent_id}/change/", _admin_form_for_agent(name="renamed")
    )
    assert change.status_code == 403
    action = browser.post(
        "/admin/agents/agent/", {"action": "issue_key", "_selected_action": [world.agent.agent_id]}
    )
    assert "tmem_" not in action.content.decode()
    revoke = browser.post(
        "/admin/agents/agentkey/", {"action": "revoke_keys", "_selected_action": [world.key.pk]}
    )
    assert revoke.status_code in (200, 302, 403)
    for path, data in [
        ("/admin/products/datasource/add/", {"source_id": "crm", "name": "CRM", "dsn": DSN}),
        ("/admin/approvals/approvalroute/add/", {"route_id": "route_x", "name": "x", "channels": "[]"}),
        (
            "/admin/approvals/slackintegration/add/",
            {"name": "main", "bot_token": "xoxb-1", "signing_secret": "s"},
        ),
        (
            "/admin/approvals/webhookendpoint/add/",
            {"name": "ops", "url": "https://x.example", "signing_secret": "s"},
        ),
        ("/admin/approvals/webhookcredential/add/", {"name": "hook", "user": staff.pk}),
        ("/admin/policies/policygrant/add/", {"policy": "cap_v2", "agent": world.agent.agent_id}),
        ("/admin/products/productgrant/add/", {"product": "crm_customers_v2", "agent": world.agent.agent_id}),
    ]:
        response = browser.post(path, data)
        assert response.status_code == 403, (path, response.status_code)
    assert _state() == before
    assert not AgentKey.objects.exclude(pk=world.key.pk).exists()
    assert AgentKey.objects.get(pk=world.key.pk).revoked_at is None
    assert not SlackIntegration.objects.exists() and not WebhookEndpoint.objects.exists()
    assert not WebhookCredential.objects.exists()


def test_django_admin_works_with_the_permission(world: World) -> None:
    browser = _browser(make_staff("keeper", "agents.manage_agents", "agents.manage_agent_keys"))

    added = browser.post("/admin/agents/agent/add/", _admin_form_for_agent())
    assert added.status_code == 302, added.content.decode()[:2000]
    issued = browser.post(
        "/admin/agents/agent/", {"action": "issue_key", "_selected_action": [world.agent.agent_id]}
    )
    assert "tmem_" in issued.content.decode()
    browser.post("/admin/agents/agentkey/", {"action": "revoke_keys", "_selected_action": [world.key.pk]})
    assert AgentKey.objects.get(pk=world.key.pk).revoked_at is not None


# --- apply_config keeps working as the system actor ----------------------------------------------


def test_apply_config_runs_as_the_system_actor(tmp_path: Any, world: World) -> None:
    config = tmp_path / "tm.yaml"
    config.write_text(
        "routes:\n  - route_id: route_ops\n    approver_group: ops\n"
        "policies:\n  - policy_id: cfg_v1\n    name: Cfg\n    rules: []\n    publish: true\n    grants: [bot]\n"
    )
    call_command("apply_config", str(config))
    assert ApprovalRoute.objects.filter(route_id="route_ops", approver_group__name="ops").exists()
    assert PolicyGrant.objects.filter(policy_id="cfg_v1", agent=world.agent).exists()
    assert Group.objects.filter(name="ops").exists()


def test_permissions_are_declared_on_the_models(world: World) -> None:
    user = get_user_model().objects.create_user("plain")
    user = grant(user, *PERMISSIONS)
    assert sorted(user.get_all_permissions()) == sorted(PERMISSIONS)


def test_staff_flag_alone_grants_nothing(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    staff = get_user_model().objects.create_user("legacy", is_staff=True)
    with pytest.raises(PermissionDenied):
        agent_registry.agent_key_issue(actor=Actor.for_user(staff), agent=make_agent("x")[0])


# --- a Slack integration decides who a button press votes as -----------------------------------


def test_only_a_superuser_sets_up_what_identifies_slack_voters(api: Any, httpserver: Any) -> None:
    """The finding: a holder of approvals.manage_integrations created a Slack integration with a
    signing secret of their own and an API answering users.info with a superuser's email, then
    signed a button press and voted as that superuser. A Slack integration vouches for reviewers,
    like a webhook credential for somebody else: superusers only (API, Django admin)."""
    from approvals.models import Approval, Vote
    from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
    from tests.approvals.test_channels import signed_slack_post

    boss = make_reviewer("boss", superuser=True)
    eve = make_staff("eve", *ALL_ADMIN_PERMS, password="pw-eve-12345")
    httpserver.expect_request("/api/users.info").respond_with_json(
        {"ok": True, "user": {"id": "U9", "profile": {"email": "boss@example.com"}}}
    )
    forged = {
        "bot_token": "xoxb-eve",
        "signing_secret": "eve-secret",
        "api_base_url": httpserver.url_for("/api/"),
    }
    eve_api = TokenClient(eve)
    created = eve_api.post("/api/v1/admin/integrations", {"name": "evil", **forged})
    assert created.status_code == 403, created.content
    assert created.json()["error"]["details"] == {"permission": "superuser"}
    admin_page = _browser(eve).post("/admin/approvals/slackintegration/add/", {"name": "evil", **forged})
    assert admin_page.status_code == 403
    assert not SlackIntegration.objects.exists()

    # An integration a superuser set up cannot be re-pointed either.
    SlackIntegration.objects.create(name="main", bot_token="xoxb-1", signing_secret="real-secret")
    for change in ({"signing_secret": "eve-secret"}, {"api_base_url": forged["api_base_url"]}):
        patched = eve_api.patch("/api/v1/admin/integrations/main", change)
        assert patched.status_code == 403 and patched.json()["error"]["details"] == {
            "permission": "superuser"
        }
    main = SlackIntegration.objects.get()
    assert (main.signing_secret, main.api_base_url) == ("real-secret", "https://slack.com/api/")

    make_route("route_finance")
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    press = {
        "type": "block_actions",
        "user": {"id": "U9"},
        "actions": [{"action_id": "approve", "value": approval_id}],
    }
    assert signed_slack_post("eve-secret", press).status_code == 401
    assert not Vote.objects.exists() and Approval.objects.get(pk=approval_id).status == "pending"

    # A superuser still can, through every door.
    root = TokenClient(boss.user)
    assert (
        root.post(
            "/api/v1/admin/integrations", {"name": "second", "bot_token": "xoxb-2", "signing_secret": "s2"}
        ).status_code
        == 201
    )
    assert root.patch("/api/v1/admin/integrations/main", {"signing_secret": "rotated"}).status_code == 200


def test_a_refusal_in_the_django_admin_is_a_message_not_a_server_error() -> None:
    """The services refuse what a form cannot know (here a credential voting as somebody else,
    superusers only); the admin used to answer that with a 500. Now: the refusal, nothing saved."""
    keeper = make_staff("keeper", "approvals.manage_integrations")
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-12345")
    browser = Client(raise_request_exception=False)
    browser.force_login(keeper)

    response = browser.post(
        "/admin/approvals/webhookcredential/add/", {"name": "hook", "user": boss.pk}, follow=True
    )

    assert response.status_code == 200
    assert "Only an active superuser may issue a webhook credential that votes as another user" in (
        response.content.decode()
    )
    assert not WebhookCredential.objects.exists()


def test_the_outbox_is_read_only_in_the_django_admin(api: Any) -> None:
    """Deliveries change only through the worker (and their trace events): Django's own
    approvals.delete_delivery / change_delivery used to delete them, unaudited."""
    from approvals.models import Delivery
    from tests.appr_helpers import make_route, open_decision, request_approval

    make_route("route_finance", channels=[{"type": "email"}])
    request_approval(api, open_decision(api), approval_route_id="route_finance")
    [delivery] = Delivery.objects.all()
    staff = make_staff(
        "clerk", "approvals.view_delivery", "approvals.change_delivery", "approvals.delete_delivery"
    )
    browser = _browser(staff)
    assert browser.get(f"/admin/approvals/delivery/{delivery.pk}/change/").status_code == 200
    assert (
        browser.post(f"/admin/approvals/delivery/{delivery.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    browser.post(
        "/admin/approvals/delivery/",
        {"action": "delete_selected", "_selected_action": [delivery.pk], "post": "yes"},
    )
    assert Delivery.objects.filter(pk=delivery.pk).exists()
