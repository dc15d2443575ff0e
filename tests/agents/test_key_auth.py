"""Agent key authentication through the REST door (docs/contract/surfaces.md) and the key lifecycle."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from agents import keys
from agents.models import Agent, AgentKey
from agents.services import registry as agent_registry
from decisions.models import Decision, TraceEvent
from tests.conftest import AgentClient
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()


def _get(authorization: str | None) -> Any:
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return Client().get("/api/v1/capabilities", **extra)


def _assert_401(response: Any, reason: str) -> None:
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == "unauthenticated"
    assert body["error"]["details"]["reason"] == reason
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize("scheme", ["Agent", "Bearer", "bearer"])
def test_agent_and_bearer_schemes_are_accepted(agent_and_key: tuple[Agent, str], scheme: str) -> None:
    agent, key = agent_and_key
    response = _get(f"{scheme} {key}")
    assert response.status_code == 200
    assert response.json()["agent_id"] == agent.agent_id
    assert response.json()["name"] == "test-agent"


def test_missing_header_is_401_missing(db: Any) -> None:
    _assert_401(_get(None), "missing")


def test_wrong_scheme_is_401_malformed(agent_and_key: tuple[Agent, str]) -> None:
    _assert_401(_get(f"Basic {agent_and_key[1]}"), "malformed")
    _assert_401(_get(agent_and_key[1]), "malformed")


def test_bad_checksum_is_401_malformed_without_a_lookup(agent_and_key: tuple[Agent, str]) -> None:
    key = agent_and_key[1]
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    _assert_401(_get(f"Agent {flipped}"), "malformed")
    _assert_401(_get("Agent tmem_short"), "malformed")


def test_well_formed_but_unknown_key_is_401_unknown(db: Any) -> None:
    response = _get(f"Agent {keys.generate(keys.AGENT_KEY_PREFIX)}")
    _assert_401(response, "unknown")
    assert "tmem_" not in response.json()["error"]["message"]


def test_expired_key_is_401_expired(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    AgentKey.objects.filter(agent=agent).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_401(_get(f"Agent {key}"), "expired")


def test_revoked_key_is_refused_on_the_very_next_request(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(f"Agent {key}").status_code == 200
    agent_registry.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
    _assert_401(_get(f"Agent {key}"), "revoked")


def test_disabled_agent_is_401_agent_disabled(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    agent_registry.agent_set_disabled(actor=SYSTEM, agent=agent, disabled=True)
    _assert_401(_get(f"Bearer {key}"), "agent_disabled")
    agent_registry.agent_set_disabled(actor=SYSTEM, agent=agent, disabled=False)
    assert _get(f"Bearer {key}").status_code == 200


def test_last_used_at_is_written_at_most_once_a_minute(
    agent_and_key: tuple[Agent, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, key = agent_and_key
    row = AgentKey.objects.get(agent=agent)
    assert row.last_used_at is None
    _get(f"Agent {key}")
    first = AgentKey.objects.get(pk=row.pk).last_used_at
    assert first is not None
    _get(f"Agent {key}")
    _get(f"Agent {key}")
    assert AgentKey.objects.get(pk=row.pk).last_used_at == first
    # A minute later (the clock moves; a web process remembers the key, last use included):
    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    _get(f"Agent {key}")
    assert AgentKey.objects.get(pk=row.pk).last_used_at == later


def test_another_agents_decision_is_404_everywhere(make_agent: Any) -> None:
    owner, owner_key = make_agent("owner")
    _, other_key = make_agent("intruder")
    created = AgentClient(owner_key).post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    decision_id = created.json()["decision_id"]
    intruder = AgentClient(other_key)
    base = f"/api/v1/decisions/{decision_id}"
    responses = [
        intruder.get(base),
        intruder.get(f"{base}/trace"),
        intruder.post(f"{base}/context", {"context": {"x": 1}}),
        intruder.post(f"{base}/close", {"action": "abort"}),
    ]
    for response in responses:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    decision = Decision.objects.get(pk=decision_id)
    assert decision.status == "open" and decision.event_count == 1
    assert TraceEvent.objects.filter(decision=decision).count() == 1
    # ...and exactly the same answer as for a decision that does not exist at all.
    missing = intruder.get("/api/v1/decisions/TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV").json()
    assert missing["error"]["code"] == responses[0].json()["error"]["code"]


# --- keys -------------------------------------------------------------------------------------


def test_a_key_of_the_wrong_length_or_characters_is_malformed() -> None:
    """Exactly 40 ASCII letters and digits after the prefix: not 39 or 41, no line break after them
    (a regular expression's "$" would allow one), no other alphabet's digits or letters."""
    key = keys.generate(keys.AGENT_KEY_PREFIX)
    assert keys.is_well_formed(key, keys.AGENT_KEY_PREFIX)
    body = key[5:]
    for bad in (
        key[:-1],
        key + "0",
        key + "\n",
        "tmem_" + body[:10] + "\u0663" + body[11:],  # ARABIC-INDIC DIGIT THREE
        "tmem_" + body[:10] + "\u00e9" + body[11:],
        "tmem_" + body[:10] + "_" + body[11:],
        "tmem_" + body[:10] + " " + body[11:],
        "tmex_" + body,
    ):
        assert not keys.is_well_formed(bad, keys.AGENT_KEY_PREFIX), repr(bad)


def test_key_format_is_tmem_plus_40_base62_with_checksum() -> None:
    for _ in range(50):
        key = keys.generate(keys.AGENT_KEY_PREFIX)
        assert re.fullmatch(r"tmem_[0-9A-Za-z]{40}", key)
        assert keys.is_well_formed(key, keys.AGENT_KEY_PREFIX)
        body = key[5:]
        assert body[-6:] == keys._checksum(body[:34])
        tampered = key[:10] + ("x" if key[10] != "x" else "y") + key[11:]
        assert not keys.is_well_formed(tampered, keys.AGENT_KEY_PREFIX)


def test_only_the_sha256_of_a_key_is_stored(agent_and_key: tuple[Agent, str]) -> None:
    import hashlib

    agent, key = agent_and_key
    row = AgentKey.objects.get(agent=agent)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:13]
    stored = [str(v) for v in AgentKey.objects.filter(pk=row.pk).values().first().values()]
    assert not any(key in value for value in stored)


def test_rotate_with_grace_keeps_the_old_key_until_the_grace_ends(
    agent_and_key: tuple[Agent, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, old_key = agent_and_key
    old_row = AgentKey.objects.get(agent=agent)
    issued = agent_registry.agent_key_rotate(actor=SYSTEM, key=old_row, grace_seconds=3600)
    assert issued.secret != old_key
    assert _get(f"Agent {issued.secret}").status_code == 200
    assert _get(f"Agent {old_key}").status_code == 200
    old_row.refresh_from_db()
    assert old_row.revoked_at is None
    assert timedelta(seconds=3590) < old_row.expires_at - timezone.now() <= timedelta(seconds=3600)
    assert AgentKey.objects.get(pk=issued.key.pk).rotated_from_id == old_row.pk
    # The grace period ends: the old key is expired, the new one works. (The clock moves, not the
    # row: a web process that checked the old key before remembers it, expiry included.)
    later = timezone.now() + timedelta(seconds=3601)
    monkeypatch.setattr(timezone, "now", lambda: later)
    _assert_401(_get(f"Agent {old_key}"), "expired")
    assert _get(f"Agent {issued.secret}").status_code == 200


def test_rotate_with_zero_grace_stops_the_old_key_at_once(agent_and_key: tuple[Agent, str]) -> None:
    agent, old_key = agent_and_key
    issued = agent_registry.agent_key_rotate(
        actor=SYSTEM, key=AgentKey.objects.get(agent=agent), grace_seconds=0
    )
    _assert_401(_get(f"Agent {old_key}"), "revoked")
    assert _get(f"Agent {issued.secret}").status_code == 200
