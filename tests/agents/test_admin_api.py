"""Admin REST API for agents and keys (docs/contract/admin.md): staff session or personal token, never an agent key."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Agent, AgentKey
from agents.services import tokens as agent_tokens
from tests.perm_helpers import ALL_ADMIN_PERMS, grant
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
BASE = "/api/v1/admin/agents"


class TokenClient:
    def __init__(self, token: str) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Token {token}"}

    def get(self, path: str) -> Any:
        return self.client.get(path, **self.headers)

    def post(self, path: str, data: Any = None) -> Any:
        return self.client.post(path, data or {}, content_type="application/json", **self.headers)

    def patch(self, path: str, data: Any) -> Any:
        return self.client.patch(path, data, content_type="application/json", **self.headers)


def _user(username: str, *, staff: bool) -> Any:
    """``staff`` here means "an admin": since issue 11 that is a set of permissions, not the flag."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", None, is_staff=staff)
    return grant(user, *ALL_ADMIN_PERMS) if staff else user


@pytest.fixture
def staff() -> TokenClient:
    user = _user("root", staff=True)
    return TokenClient(agent_tokens.personal_token_create(actor=Actor.system(), user=user).secret)


def _agent_get(key: str) -> int:
    return Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}").status_code


def test_staff_token_creates_lists_and_gets_agents(staff: TokenClient) -> None:
    _user("alice", staff=False)
    created = staff.post(BASE, {"name": "billing-bot", "owner": "alice", "description": "invoices"})
    assert created.status_code == 201
    agent = created.json()
    assert agent["name"] == "billing-bot" and agent["owner"] == "alice" and agent["disabled"] is False
    assert agent["agent_id"].startswith("agent_") and agent["keys"] == []
    listed = staff.get(BASE).json()["agents"]
    assert [a["name"] for a in listed] == ["billing-bot"]
    assert staff.get(f"{BASE}/{agent['agent_id']}").json() == agent


def test_duplicate_name_is_conflict_and_unknown_owner_invalid(staff: TokenClient) -> None:
    assert staff.post(BASE, {"name": "dup"}).status_code == 201
    duplicate = staff.post(BASE, {"name": "dup"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "conflict"
    bad_owner = staff.post(BASE, {"name": "other", "owner": "nobody"})
    assert bad_owner.status_code == 400 and bad_owner.json()["error"]["details"]["field"] == "owner"
    assert staff.post(BASE, {}).json()["error"]["details"]["field"] == "name"
    assert list(Agent.objects.values_list("name", flat=True)) == ["dup"]


def test_issue_key_shows_it_once_and_it_works(staff: TokenClient) -> None:
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    issued = staff.post(f"{BASE}/{agent_id}/keys", {"name": "ci", "expires_in_seconds": 3600})
    assert issued.status_code == 201
    out = issued.json()
    assert out["key"].startswith("tmem_") and len(out["key"]) == 45
    assert out["key_id"].startswith("key_") and out["expires_at"].endswith("Z")
    assert _agent_get(out["key"]) == 200
    # Never shown again: neither the agent view nor the list carries the secret.
    detail = staff.get(f"{BASE}/{agent_id}")
    assert out["key"] not in detail.content.decode()
    assert detail.json()["keys"][0]["prefix"] == out["key"][:13]
    assert detail.json()["keys"][0]["state"] == "active"
    assert out["key"] not in staff.get(BASE).content.decode()


def test_issue_key_rejects_a_bad_expiry(staff: TokenClient) -> None:
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    for payload, field in [
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_in_seconds": -5}, "expires_in_seconds"),
    ]:
        response = staff.post(f"{BASE}/{agent_id}/keys", payload)
        assert response.status_code == 400, payload
        assert response.json()["error"]["details"]["field"] == field
    assert AgentKey.objects.count() == 0


def test_revoke_stops_the_key_on_the_next_request(staff: TokenClient) -> None:
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    issued = staff.post(f"{BASE}/{agent_id}/keys").json()
    revoked = staff.post(f"{BASE}/{agent_id}/keys/{issued['key_id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert _agent_get(issued["key"]) == 401
    assert staff.post(f"{BASE}/{agent_id}/keys/key_999999/revoke").status_code == 404


def test_rotate_with_grace_and_without(staff: TokenClient) -> None:
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    first = staff.post(f"{BASE}/{agent_id}/keys").json()
    rotated = staff.post(f"{BASE}/{agent_id}/keys/{first['key_id']}/rotate", {"grace_seconds": 600})
    assert rotated.status_code == 201
    second = rotated.json()
    assert second["previous_key"]["state"] == "active" and second["previous_key"]["expires_at"] is not None
    assert _agent_get(first["key"]) == 200 and _agent_get(second["key"]) == 200
    rotated_again = staff.post(f"{BASE}/{agent_id}/keys/{second['key_id']}/rotate", {"grace_seconds": 0})
    assert rotated_again.status_code == 201
    third = rotated_again.json()
    assert third["previous_key"]["state"] == "revoked"
    assert _agent_get(second["key"]) == 401 and _agent_get(third["key"]) == 200
    bad = staff.post(f"{BASE}/{agent_id}/keys/{third['key_id']}/rotate", {"grace_seconds": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "grace_seconds"


def test_patch_disabled_stops_all_keys_and_reenable_restores_them(staff: TokenClient) -> None:
    _user("bob", staff=False)
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    keys = [staff.post(f"{BASE}/{agent_id}/keys", {"name": f"k{i}"}).json()["key"] for i in range(2)]
    patched = staff.patch(f"{BASE}/{agent_id}", {"disabled": True, "owner": "bob"})
    assert patched.status_code == 200
    assert patched.json()["disabled"] is True and patched.json()["owner"] == "bob"
    assert [_agent_get(k) for k in keys] == [401, 401]
    staff.patch(f"{BASE}/{agent_id}", {"disabled": False})
    assert [_agent_get(k) for k in keys] == [200, 200]
    bad = staff.patch(f"{BASE}/{agent_id}", {"disabled": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "disabled"
    unknown = staff.patch(f"{BASE}/{agent_id}", {"agent_id": "agent_x"})
    assert unknown.status_code == 400
    assert Agent.objects.get(pk=agent_id).disabled is False


def test_staff_session_works_too(staff: TokenClient) -> None:
    client = Client()
    client.force_login(_user("sessionadmin", staff=True))
    assert client.post(BASE, {"name": "via-session"}, content_type="application/json").status_code == 201
    assert client.get(BASE).json()["agents"][0]["name"] == "via-session"


def test_non_staff_is_403_permission_denied_and_nothing_changes(make_agent: Any) -> None:
    agent, _ = make_agent("existing")
    user = _user("mallory", staff=False)
    token = TokenClient(agent_tokens.personal_token_create(actor=Actor.system(), user=user).secret)
    responses = [
        token.get(BASE),
        token.post(BASE, {"name": "sneaky"}),
        token.get(f"{BASE}/{agent.agent_id}"),
        token.patch(f"{BASE}/{agent.agent_id}", {"disabled": True}),
        token.post(f"{BASE}/{agent.agent_id}/keys"),
    ]
    for response in responses:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert list(Agent.objects.values_list("name", "disabled")) == [("existing", False)]
    assert AgentKey.objects.filter(agent=agent).count() == 1


def test_agent_keys_and_anonymous_calls_are_401(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    as_agent = Client().get(BASE, HTTP_AUTHORIZATION=f"Agent {key}")
    assert as_agent.status_code == 401 and as_agent.json()["error"]["code"] == "unauthenticated"
    bearer = Client().post(f"{BASE}/{agent.agent_id}/keys", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert bearer.status_code == 401
    assert Client().get(BASE).status_code == 401
    assert AgentKey.objects.filter(agent=agent).count() == 1


def test_revoked_personal_token_is_401(db: Any) -> None:
    user = _user("admin2", staff=True)
    issued = agent_tokens.personal_token_create(actor=Actor.system(), user=user)
    client = TokenClient(issued.secret)
    assert client.get(BASE).status_code == 200
    agent_tokens.personal_token_revoke(actor=Actor.system(), token=issued.token)
    response = client.get(BASE)
    assert response.status_code == 401 and response.json()["error"]["details"]["reason"] == "revoked"


def test_rotating_a_revoked_key_is_conflict(staff: TokenClient) -> None:
    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    key_id = staff.post(f"{BASE}/{agent_id}/keys").json()["key_id"]
    assert staff.post(f"{BASE}/{agent_id}/keys/{key_id}/revoke").status_code == 200
    response = staff.post(f"{BASE}/{agent_id}/keys/{key_id}/rotate", {"grace_seconds": 60})
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert AgentKey.objects.filter(agent_id=agent_id).count() == 1


def test_key_of_another_agent_is_not_found(staff: TokenClient) -> None:
    first = staff.post(BASE, {"name": "one"}).json()["agent_id"]
    second = staff.post(BASE, {"name": "two"}).json()["agent_id"]
    key_id = staff.post(f"{BASE}/{first}/keys").json()["key_id"]
    response = staff.post(f"{BASE}/{second}/keys/{key_id}/revoke")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert AgentKey.objects.get(agent_id=first).revoked_at is None
    assert staff.get(f"{BASE}/agent_nope").status_code == 404


def test_with_redis_down_key_and_agent_changes_are_503_and_change_nothing(
    staff: TokenClient, settings: Any
) -> None:
    """Web processes remember verified keys until Redis tells them of a change (agents/keycache.py):
    a revocation, rotation or agent change Redis cannot be told of is not made."""
    from tests.fault_helpers import RedisServer, use_cache
    from tracemem_core import shared_cache

    agent_id = staff.post(BASE, {"name": "bot"}).json()["agent_id"]
    issued = staff.post(f"{BASE}/{agent_id}/keys").json()
    redis = RedisServer().start()
    use_cache(settings, redis.url)
    try:
        assert _agent_get(issued["key"]) == 200
        redis.stop()
        shared_cache.reset()
        for response in (
            staff.post(f"{BASE}/{agent_id}/keys/{issued['key_id']}/revoke"),
            staff.post(f"{BASE}/{agent_id}/keys/{issued['key_id']}/rotate"),
            staff.patch(f"{BASE}/{agent_id}", {"disabled": True}),
        ):
            assert response.status_code == 503, response.content
            error = response.json()["error"]
            assert error["code"] == "unavailable" and error["details"]["applied"] is False
            assert "nothing was changed" in error["message"] and "Redis" in error["message"]
            assert response["Retry-After"] == str(error["details"]["retry_after"])
        assert _agent_get(issued["key"]) == 200  # checked in the database: still active
        assert AgentKey.objects.filter(agent__agent_id=agent_id).count() == 1  # no replacement issued
        assert staff.get(f"{BASE}/{agent_id}").json()["disabled"] is False
    finally:
        redis.stop()
        shared_cache.reset()
