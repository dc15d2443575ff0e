"""docs/contract/errors.md 429 rate_limited: one budget per agent across REST and MCP, counted in the shared cache."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from agents import keycache
from agents.models import Agent
from agents.services import registry as agent_registry
from tracemem_core.actor import Actor
from tracemem_core.rate_limit import parse_rate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def three_per_day(settings: Any) -> None:
    # A day-long window: the count cannot roll over in the middle of a test.
    settings.TRACEMEM_AGENT_RATE_LIMIT = "3/day"


def _capabilities(key: str) -> Any:
    return Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}")


def _mcp_call(key: str) -> Any:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "capabilities_get", "arguments": {}},
    }
    return Client().post(
        "/mcp",
        json.dumps(message),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        HTTP_ACCEPT="application/json, text/event-stream",
    )


def test_the_request_over_the_limit_is_429_rate_limited_with_retry_after(make_agent: Any) -> None:
    _, key = make_agent()
    assert [_capabilities(key).status_code for _ in range(3)] == [200, 200, 200]
    refused = _capabilities(key)
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "rate_limited"
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 86400
    assert body["details"]["retry_after"] == retry_after


def test_rest_and_mcp_share_one_budget_per_agent(make_agent: Any) -> None:
    _, key = make_agent()
    assert _mcp_call(key).status_code == 200
    assert [_capabilities(key).status_code for _ in range(2)] == [200, 200]
    refused = _mcp_call(key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


def test_one_agent_at_its_limit_does_not_slow_another(make_agent: Any) -> None:
    _, busy = make_agent("busy")
    _, quiet = make_agent("quiet")
    for _ in range(4):
        _capabilities(busy)
    assert _capabilities(busy).status_code == 429
    assert _capabilities(quiet).status_code == 200


def test_a_remembered_key_refused_after_a_change_elsewhere_is_not_counted(make_agent: Any) -> None:
    """Authentication counts a remembered key's request in the same round trip that checks the
    credentials generation: a request it then refuses must not spend the agent's budget."""
    agent, key = make_agent()
    assert [_capabilities(key).status_code for _ in range(2)] == [200, 200]  # the key is remembered
    # Another process disables the agent, then enables it again: all this one shares with it is
    # the database and Redis.
    Agent.objects.filter(pk=agent.pk).update(disabled=True)
    keycache.invalidate()
    assert _capabilities(key).json()["error"]["details"]["reason"] == "agent_disabled"
    Agent.objects.filter(pk=agent.pk).update(disabled=False)
    keycache.invalidate()
    assert [_capabilities(key).status_code for _ in range(2)] == [200, 429]


def test_a_remembered_key_that_expired_is_refused_without_being_counted(
    make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = make_agent()
    system = Actor.system()
    short = agent_registry.agent_key_issue(
        actor=system, agent=agent, name="short", expires_at=timezone.now() + timedelta(seconds=30)
    )
    other = agent_registry.agent_key_issue(actor=system, agent=agent, name="other")
    assert _capabilities(short.secret).status_code == 200  # remembered, with its expiry
    # Within a minute, so no last_used_at is due either: the expiry alone must keep it uncounted.
    later = timezone.now() + timedelta(seconds=40)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert _capabilities(short.secret).json()["error"]["details"]["reason"] == "expired"
    # One budget per agent, whichever key: two more requests, then the limit.
    assert [_capabilities(other.secret).status_code for _ in range(3)] == [200, 200, 429]


def test_without_redis_the_limit_and_revocation_hold_in_the_process(make_agent: Any, settings: Any) -> None:
    """The embedded default: no REDIS_URL, the local-memory cache."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    agent, key = make_agent()
    assert [_capabilities(key).status_code for _ in range(3)] == [200, 200, 200]
    assert _mcp_call(key).status_code == 429
    agent_registry.agent_key_revoke(actor=Actor.system(), key=agent.keys.get())
    assert _capabilities(key).json()["error"]["details"]["reason"] == "revoked"


def test_limit_off_never_throttles(make_agent: Any, settings: Any) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "off"
    _, key = make_agent()
    assert {_capabilities(key).status_code for _ in range(6)} == {200}


@pytest.mark.parametrize("rate", ["fast", "10/fortnight", "-1/minute", "x/second"])
def test_a_malformed_rate_setting_fails_loudly(rate: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="TRACEMEM_AGENT_RATE_LIMIT"):
        parse_rate(rate)


def test_rates_parse_to_count_and_window() -> None:
    assert parse_rate("1200/minute") == (1200, 60)
    assert parse_rate("5/seconds") == (5, 1)
    assert parse_rate("off") is None
