"""Agent-key authentication without a database round trip (issue 17), and never stale.

A verified key is remembered per process (agents/keycache.py) while the credentials generation in
Redis stays the one read before its database check; revoking, rotating, disabling or editing
through any path changes the generation, so the very next request is checked in the database.
Each test warms the cache with a request first, so a stale entry would be used if one survived.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import keycache
from agents.models import Agent, AgentKey
from agents.services import registry as agent_services
from tests.fault_helpers import RedisServer, use_cache
from tracemem_core import shared_cache
from tracemem_core.actor import Actor
from tracemem_core.errors import Unavailable

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()


def _get(key: str) -> Any:
    return Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}")


def _key_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if '"agents_agentkey"' in q["sql"]]


def _reason(response: Any) -> str:
    assert response.status_code == 401, response.content
    return response.json()["error"]["details"]["reason"]


def test_a_known_key_is_checked_without_a_database_query(agent_and_key: tuple[Agent, str]) -> None:
    _, key = agent_and_key
    assert _get(key).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert _get(key).status_code == 200
    assert _key_queries(queries) == []


def test_each_request_gets_its_own_copy_of_the_remembered_rows(agent_and_key: tuple[Agent, str]) -> None:
    """What one request does to its key and agent never reaches the remembered rows or another request."""
    agent, key = agent_and_key
    header = f"Agent {key}"
    agent_services.agent_key_authenticate(authorization=header)  # remembered
    first = agent_services.agent_key_authenticate(authorization=header)
    second = agent_services.agent_key_authenticate(authorization=header)
    assert first.key is not second.key and first.agent is not second.agent
    assert first.key.agent is first.agent and second.key.agent is second.agent
    assert first.key._state.db == "default" and not first.key._state.adding
    assert first.key.pk == second.key.pk and first.agent.agent_id == agent.agent_id
    first.key.last_used_at = None
    first.agent.name = "changed-by-one-request"
    first.key._state.fields_cache.clear()
    third = agent_services.agent_key_authenticate(authorization=header)
    assert third.agent.name == agent.name and third.key.agent.name == agent.name
    assert third.key.last_used_at == second.key.last_used_at


def test_revocation_is_effective_on_the_next_request(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    agent_services.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
    assert _reason(_get(key)) == "revoked"


def test_revocation_by_another_process_is_seen_here(agent_and_key: tuple[Agent, str]) -> None:
    """Another web process revokes: all this one shares with it is the database and Redis."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now())  # the other process's write
    keycache.invalidate()  # and the new generation it publishes when its transaction commits
    assert _reason(_get(key)) == "revoked"


def test_rotation_without_grace_stops_the_old_key_on_the_next_request(
    agent_and_key: tuple[Agent, str],
) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    issued = agent_services.agent_key_rotate(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
    assert _reason(_get(key)) == "revoked"
    assert _get(issued.secret).status_code == 200


def test_expiry_needs_no_invalidation(
    agent_and_key: tuple[Agent, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = agent_and_key
    issued = agent_services.agent_key_issue(
        actor=SYSTEM, agent=agent, name="short", expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert _get(issued.secret).status_code == 200
    later = timezone.now() + timedelta(minutes=6)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert _reason(_get(issued.secret)) == "expired"


def test_disabling_the_agent_stops_its_remembered_keys(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    agent_services.agent_set_disabled(actor=SYSTEM, agent=agent, disabled=True)
    assert _reason(_get(key)) == "agent_disabled"
    agent_services.agent_set_disabled(actor=SYSTEM, agent=agent, disabled=False)
    assert _get(key).status_code == 200


def test_a_save_outside_the_services_invalidates_too(agent_and_key: tuple[Agent, str]) -> None:
    """The Django admin site and a shell save rows directly; a signal covers them."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    row = Agent.objects.get(pk=agent.pk)
    row.disabled = True
    row.save()
    assert _reason(_get(key)) == "agent_disabled"


def test_a_renamed_agent_acts_under_its_new_name_at_once(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    agent_services.agent_update(actor=SYSTEM, agent=agent, name="renamed-agent")
    created = Client().post(
        "/api/v1/decisions",
        {"intent": "a.b.c", "automation_mode": "autonomous"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Agent {key}",
    )
    assert created.status_code == 201
    from decisions.models import TraceEvent

    event = TraceEvent.objects.get(decision_id=created.json()["decision_id"])
    assert event.actor["name"] == "renamed-agent"


def test_without_redis_every_request_checks_the_database(
    agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    agent, key = agent_and_key
    redis = RedisServer().start()  # a Redis of this test's own, which it can really stop
    use_cache(settings, redis.url)
    try:
        assert _get(key).status_code == 200
        with CaptureQueriesContext(connection) as queries:
            assert _get(key).status_code == 200
        assert _key_queries(queries) == []  # remembered: the Redis up, the key came from memory
        redis.stop()
        shared_cache.reset()
        with CaptureQueriesContext(connection) as queries:
            assert _get(key).status_code == 200
        assert len(_key_queries(queries)) == 1
        # Redis is down for the revoking process too: the other processes could not be told, so the
        # revocation is refused and nothing changes (the key keeps working, as the admin is told).
        with pytest.raises(Unavailable) as refused:
            agent_services.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
        assert "nothing was changed" in refused.value.message
        assert refused.value.details["applied"] is False
        assert AgentKey.objects.get(agent=agent).revoked_at is None
        assert _get(key).status_code == 200
    finally:
        redis.stop()
        shared_cache.reset()


def test_a_flushed_generation_never_revives_an_old_entry(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now())
    from django.core.cache import cache

    cache.delete(keycache.GENERATION_KEY)  # Redis restarted empty, or evicted the key
    assert _reason(_get(key)) == "revoked"


@pytest.mark.django_db(transaction=True)
def test_requests_through_the_front_leave_no_cache_backend_behind(
    agent_and_key: tuple[Agent, str], monkeypatch: Any, settings: Any
) -> None:
    """The front runs each request in a fresh context, where Django's handler builds a new cache
    backend: the names the key cache remembers must not keep those alive (they did, 512 of them, and
    were never found again), so many requests leave no more backends than one does."""
    import gc

    from django.core.cache import caches

    from tests.front_helpers import own_pool, through_front

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.TRACEMEM_AGENT_RATE_LIMIT = "1000000/minute"  # counted in Redis, with the generation
    backend_type = type(caches["default"])
    _, key = agent_and_key
    headers = [("authorization", f"Agent {key}")]

    def live_backends() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is backend_type)

    with own_pool(monkeypatch):
        assert through_front("GET", "/api/v1/capabilities", headers=headers).status == 200
        after_one = live_backends()
        for _ in range(30):
            assert through_front("GET", "/api/v1/capabilities", headers=headers).status == 200
        assert live_backends() <= after_one


@pytest.mark.django_db(transaction=True)
def test_the_key_check_builds_no_cache_backend_per_request(
    agent_and_key: tuple[Agent, str], monkeypatch: Any, settings: Any
) -> None:
    """The shared-pool Redis backend is one per process for the key check (its pools and client
    already are): Django's handler built a new one in each request's fresh context, with its options
    parsed and its client made again (docs/performance.md section 30)."""
    from tests.front_helpers import own_pool, through_front
    from tracemem_core.redis_cache import SharedPoolRedisCache

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.TRACEMEM_AGENT_RATE_LIMIT = "1000000/minute"  # counted in Redis, with the generation
    _, key = agent_and_key
    headers = [("authorization", f"Agent {key}"), ("content-type", "application/json")]
    body = b'{"intent": "cache.backend.check", "automation_mode": "autonomous"}'
    built: list[object] = []
    real_init = SharedPoolRedisCache.__init__

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    with own_pool(monkeypatch):
        assert through_front("POST", "/api/v1/decisions", body, headers).status == 201
        monkeypatch.setattr(SharedPoolRedisCache, "__init__", counted)
        for _ in range(5):
            assert through_front("POST", "/api/v1/decisions", body, headers).status == 201
    assert built == []


def test_the_key_checks_backend_follows_the_cache_settings(settings: Any) -> None:
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from tracemem_core import redis_cache

    first = redis_cache.default_backend()
    assert isinstance(first, RedisCache) and redis_cache.default_backend() is first
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": "other"}}
    moved = redis_cache.default_backend()
    assert moved is not first and moved.key_prefix == "other"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert redis_cache.default_backend() is caches["default"]


def _losing_keycache_commit_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The revoking process is killed (or loses Redis) right after its commit: whatever the key cache
    was to do once the transaction commits never happens. Every other commit hook still runs."""
    from django.db import transaction

    real = transaction.on_commit

    def on_commit(func: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(func, "__module__", None) != keycache.__name__:
            real(func, *args, **kwargs)

    monkeypatch.setattr(transaction, "on_commit", on_commit)


@pytest.mark.django_db(transaction=True)
def test_a_request_while_a_revocation_commits_is_never_remembered(
    agent_and_key: tuple[Agent, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of another web process arriving between the revocation's notice to Redis and its
    commit reads the key as it still is (active): those rows must not be remembered as current,
    or, if the revoking process never gets to publish after its commit, they stay trusted."""
    from django.db import transaction

    from tests.fault_helpers import within

    agent, key = agent_and_key
    assert _get(key).status_code == 200  # remembered
    _losing_keycache_commit_hooks(monkeypatch)
    with transaction.atomic():
        agent_services.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
        response, _ = within(10, lambda: _get(key))  # another connection: not committed yet
        assert response.status_code == 200
    for _ in range(3):
        assert _reason(_get(key)) == "revoked"


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_a_transaction_while_redis_is_down_says_it_was_applied(
    agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    """A shell's ``save()`` outside any transaction has committed before anyone can refuse it: the
    error says so, and how long other processes may still accept the key."""
    agent, key = agent_and_key
    redis = RedisServer().start()
    use_cache(settings, redis.url)
    try:
        assert _get(key).status_code == 200
        redis.stop()
        shared_cache.reset()
        row = AgentKey.objects.get(agent=agent)
        row.revoked_at = timezone.now()
        with pytest.raises(Unavailable) as unpublished:
            row.save()
        assert unpublished.value.details["applied"] is True
        assert "was applied" in unpublished.value.message and "60 seconds" in unpublished.value.message
        assert _reason(_get(key)) == "revoked"  # this process checks the database while Redis is down
    finally:
        redis.stop()
        shared_cache.reset()
