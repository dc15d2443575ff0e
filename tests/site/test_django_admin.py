"""The Django admin as a superuser sees it: agents and keys managed through the services, a new
key shown exactly once, decisions and trace events strictly read-only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents import keys
from agents.models import Agent, AgentKey
from decisions import services as decision_services
from decisions.models import Decision, TraceEvent
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def decision(agent_actor: Actor) -> Decision:
    d = decision_services.decision_create(
        actor=agent_actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    decision_services.decision_add_context(actor=agent_actor, decision_id=d.decision_id, context={"x": 1})
    d.refresh_from_db()
    return d


def test_admin_list_pages_render(admin_client: Client, decision: Decision) -> None:
    for url in [
        "/admin/",
        "/admin/agents/agent/",
        "/admin/agents/agentkey/",
        "/admin/decisions/decision/",
        "/admin/decisions/traceevent/",
        f"/admin/agents/agent/{decision.agent_id}/change/",
        f"/admin/decisions/decision/{decision.decision_id}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_key_list_shows_prefix_name_dates_and_state(
    admin_client: Client, agent_and_key: tuple[Agent, str]
) -> None:
    agent, secret = agent_and_key
    page = admin_client.get("/admin/agents/agentkey/").content.decode()
    assert secret[:13] in page and secret not in page
    for column in ("Prefix", "Name", "Created at", "Expires at", "Last used at", "State"):
        assert column in page
    assert ">active<" in page


# The key inline's formset management data, which every admin form post carries.
_INLINE = {
    "keys-TOTAL_FORMS": "0",
    "keys-INITIAL_FORMS": "0",
    "keys-MIN_NUM_FORMS": "0",
    "keys-MAX_NUM_FORMS": "1000",
}


def test_create_and_edit_agent_through_the_admin(admin_client: Client) -> None:
    owner = get_user_model().objects.create_user("owner1", "o@example.com", None)
    response = admin_client.post(
        "/admin/agents/agent/add/", {"name": "admin-made", "description": "", "owner": owner.pk, **_INLINE}
    )
    assert response.status_code == 302, response.content[:500]
    agent = Agent.objects.get(name="admin-made")
    assert agent.owner == owner and agent.disabled is False and agent.agent_id.startswith("agent_")
    response = admin_client.post(
        f"/admin/agents/agent/{agent.agent_id}/change/",
        {"name": "admin-made", "description": "now disabled", "owner": "", "disabled": "on", **_INLINE},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.disabled is True and agent.owner is None and agent.description == "now disabled"


def test_issue_key_action_shows_the_secret_exactly_once(admin_client: Client) -> None:
    agent = Agent.objects.create(name="needs-key")
    response = admin_client.post(
        "/admin/agents/agent/", {"action": "issue_key", "_selected_action": [agent.agent_id]}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    found = re.findall(r"tmem_[0-9A-Za-z]{40}", response.content.decode())
    assert len(found) == 1
    secret = found[0]
    assert keys.is_well_formed(secret, keys.AGENT_KEY_PREFIX)
    stored = AgentKey.objects.get(agent=agent)
    assert stored.key_hash == keys.digest(secret)
    # The key works, and no later page shows it again.
    assert Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {secret}").status_code == 200
    for url in (
        "/admin/agents/agent/",
        f"/admin/agents/agent/{agent.agent_id}/change/",
        "/admin/agents/agentkey/",
    ):
        assert secret not in admin_client.get(url).content.decode()


def test_issue_key_action_twice_never_repeats_a_key_name(admin_client: Client) -> None:
    """Issue 18 (audit): the admin's "Issue a new key" is a key-issuing door like the others; the
    names it gives are ones none of the agent's keys has."""
    agent = Agent.objects.create(name="keyed-twice")
    for _ in range(3):
        response = admin_client.post(
            "/admin/agents/agent/", {"action": "issue_key", "_selected_action": [agent.agent_id]}
        )
        assert response.status_code == 200
    names = list(AgentKey.objects.filter(agent=agent).values_list("name", flat=True))
    assert len(names) == 3 and len(set(names)) == 3, names


def test_revoke_action_calls_the_service(admin_client: Client, agent_and_key: tuple[Agent, str]) -> None:
    agent, secret = agent_and_key
    key = AgentKey.objects.get(agent=agent)
    response = admin_client.post(
        "/admin/agents/agentkey/", {"action": "revoke_keys", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.state() == "revoked"
    assert Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {secret}").status_code == 401


def test_keys_cannot_be_added_changed_or_deleted_directly(
    admin_client: Client, agent_and_key: tuple[Agent, str]
) -> None:
    key = AgentKey.objects.get(agent=agent_and_key[0])
    assert admin_client.get("/admin/agents/agentkey/add/").status_code == 403
    assert admin_client.post(f"/admin/agents/agentkey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AgentKey.objects.filter(pk=key.pk).exists()


def test_decisions_and_events_cannot_be_changed(admin_client: Client, decision: Decision) -> None:
    before = (decision.status, decision.intent, decision.event_count)
    change_url = f"/admin/decisions/decision/{decision.decision_id}/change/"
    page = admin_client.get(change_url).content.decode()
    assert 'name="_save"' not in page  # the read-only view has no save button
    assert page.index("<p>Created</p>") < page.index("<p>Context</p>")  # events inline, in order
    response = admin_client.post(change_url, {"intent": "forged.intent", "status": "committed"})
    assert response.status_code == 403
    assert admin_client.get("/admin/decisions/decision/add/").status_code == 403
    assert (
        admin_client.post(
            f"/admin/decisions/decision/{decision.decision_id}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    event = TraceEvent.objects.get(decision=decision, seq=2)
    assert (
        admin_client.post(f"/admin/decisions/traceevent/{event.pk}/change/", {"type": "close"}).status_code
        == 403
    )
    assert (
        admin_client.post(f"/admin/decisions/traceevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    decision.refresh_from_db()
    assert (decision.status, decision.intent, decision.event_count) == before
    assert TraceEvent.objects.filter(decision=decision).count() == 2


def test_non_staff_cannot_open_the_admin(db: Any) -> None:
    user = get_user_model().objects.create_user("plain", "p@example.com", None)
    client = Client()
    client.force_login(user)
    assert client.get("/admin/agents/agent/").status_code == 302  # to the admin login


def test_with_redis_down_a_revocation_or_an_agent_change_is_refused_and_says_nothing_changed(
    admin_client: Client, agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    """Web processes remember verified keys until Redis tells them of a change (agents/keycache.py):
    a change Redis cannot be told of is not made, and the admin is told so and why."""
    from tests.fault_helpers import RedisServer, use_cache
    from tracemem_core import shared_cache

    agent, _ = agent_and_key
    key = AgentKey.objects.get(agent=agent)
    redis = RedisServer().start()
    use_cache(settings, redis.url)
    try:
        redis.stop()
        shared_cache.reset()
        response = admin_client.post(
            "/admin/agents/agentkey/", {"action": "revoke_keys", "_selected_action": [key.pk]}, follow=True
        )
        page = response.content.decode()
        assert "nothing was changed" in page and "Redis" in page, page
        key.refresh_from_db()
        assert key.state() == "active"
        response = admin_client.post(
            f"/admin/agents/agent/{agent.agent_id}/change/",
            {"name": agent.name, "description": "", "owner": "", "disabled": "on", **_INLINE},
            follow=True,
        )
        page = response.content.decode()
        assert "nothing was changed" in page and "Redis" in page, page[:3000]
        agent.refresh_from_db()
        assert agent.disabled is False
    finally:
        redis.stop()
        shared_cache.reset()
