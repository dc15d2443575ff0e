"""Audit 2 of agents/keycache.py (f78e655): findings as strict xfails, to be removed by their fixes.

Each test warms the key cache with a request first, so a stale entry would be used if one survived.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import keycache
from agents.models import Agent, AgentKey
from agents.services import registry as agent_services
from tests.conftest import notifications_delivered
from tracemem_core.actor import Actor
from tracemem_core.errors import Unavailable

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()


def _get(key: str) -> Any:
    return Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}")


def _key_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if '"agents_agentkey"' in q["sql"]]


def _key_queries_of_get(key: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert _get(key).status_code == 200
    return _key_queries(queries)


@pytest.mark.django_db(transaction=True)
def test_a_bulk_revocation_in_a_shell_stops_a_remembered_key(agent_and_key: tuple[Agent, str]) -> None:
    """An operator revoking every key of a leaked agent from ``manage.py shell`` writes
    ``AgentKey.objects.filter(agent=...).update(revoked_at=now())`` — a committed revocation that
    never goes through save() (agents/apps.py's signals) nor the services (audit2 K1). The database
    notifies every process when it commits (agents migration 0004): the key stops once that
    notification is handled, commit + delivery latency (committed here: the test's transaction would
    never notify anyone)."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) == []  # remembered
    assert AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now()) == 1
    notifications_delivered()
    response = _get(key)
    assert response.status_code == 401, "a revoked key was accepted from memory"


@pytest.mark.django_db(transaction=True)
def test_a_bulk_disable_in_a_shell_stops_a_remembered_key(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) == []  # remembered
    Agent.objects.filter(pk=agent.pk).update(disabled=True)
    notifications_delivered()
    assert _get(key).status_code == 401, "a disabled agent's key was accepted from memory"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_does_not_stop_later_changes_from_publishing(
    agent_and_key: tuple[Agent, str], make_agent: Any
) -> None:
    """audit2 K2: a change rolled back after its step 1 left the in-flight count at 1, so the next
    committed change's step 2 published nothing, and no key was remembered until CHANGE_SECONDS
    passed with no change at all (never, under a change every < 120 s)."""
    agent, key = agent_and_key
    _, other_secret = make_agent("other-agent")
    other = AgentKey.objects.exclude(agent=agent).get()
    with pytest.raises(RuntimeError), transaction.atomic():
        agent_services.agent_key_revoke(actor=SYSTEM, key=other)  # step 1: marker, count 1
        raise RuntimeError("anything after step 1 fails: the audit insert, the COMMIT itself")
    assert AgentKey.objects.get(pk=other.pk).revoked_at is None  # rolled back, as it should
    # A committed change afterwards (its own step 1 and step 2, with the commit between them).
    agent_services.agent_update(actor=SYSTEM, agent=agent, description="edited")
    notifications_delivered()  # its commit's notification makes this process forget: done with now
    assert keycache.generation() is not None, "the committed change published no generation"
    assert _get(key).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert _get(key).status_code == 200
    assert _key_queries(queries) == [], "nothing is remembered any more"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["disable_agents", "enable_agents"])
def test_a_partly_applied_admin_action_does_not_say_nothing_was_changed(
    action: str, admin_client: Client, make_agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """audit2 K3: the admin's disable/enable actions ran one transaction per agent; when Redis failed
    on the second agent the 503 page said 'nothing was changed' but the first one was changed. Now
    one transaction per action: the page's word holds."""
    first, _ = make_agent("agent-one")
    second, _ = make_agent("agent-two")
    before = action == "enable_agents"
    Agent.objects.update(disabled=before)
    real = agent_services.agent_update
    begun: list[int] = []

    def redis_fails_on_the_second_agent(**kwargs: Any) -> Agent:
        begun.append(1)
        if len(begun) > 1:  # Redis went down between the two agents: the second change is refused
            keycache.forget_local()
            raise Unavailable("the shared cache (Redis) is unavailable: nothing was changed", retry_after=1)
        return real(**kwargs)

    monkeypatch.setattr(agent_services, "agent_update", redis_fails_on_the_second_agent)
    response = admin_client.post(
        "/admin/agents/agent/",
        {"action": action, "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert len(begun) == 2, page  # the premise: Redis failed on the second agent
    assert "nothing was changed" in page, page
    changed = sorted(a.name for a in Agent.objects.exclude(disabled=before))
    assert changed == [], f"the page says nothing changed, yet {changed} were changed"


@pytest.mark.django_db(transaction=True)
def test_a_revocation_made_by_a_process_without_redis_url_is_seen_by_the_web(
    agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    """audit2 K4: a process without REDIS_URL tells Redis nothing; the database's notification of the
    commit reaches the web processes all the same (agents migration 0004)."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) == []  # the web process (with Redis) remembers the key
    web_caches = settings.CACHES
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    try:  # ``manage.py shell`` on a host whose environment has DATABASE_URL but no REDIS_URL
        agent_services.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
    finally:
        settings.CACHES = web_caches
    assert AgentKey.objects.get(agent=agent).revoked_at is not None  # committed, no 503
    notifications_delivered()
    assert _get(key).status_code == 401, "a revoked key was accepted from memory"


# Guards (pass on main): each fails when a line of agents/keycache.py that no other test covers is
# reverted (checked by mutating it, audit2).


def test_a_change_publishing_while_another_is_in_flight_does_not_let_its_old_rows_be_remembered(
    agent_and_key: tuple[Agent, str],
) -> None:
    """Fails if _END_CHANGE publishes without counting the changes in flight (its ``ZCARD ... > 0``
    line removed): another process's revocation is between its step 1 and its commit, this process
    publishes an unrelated change, a request reads the key (still active) and remembers it; the
    revocation commits and its step 2 is lost (the process killed) — the key must still be refused."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    keycache._script(keycache._BEGIN_CHANGE, -12345, keycache.CHANGE_SECONDS)  # the other's step 1
    assert keycache.invalidate()  # an unrelated change here: both steps
    assert _get(key).status_code == 200  # read in the database: not revoked yet
    AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now())  # the other's commit
    assert _get(key).status_code == 401  # its step 2 never comes


def test_a_process_that_only_served_requests_during_an_outage_forgets_its_keys(
    agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    """Fails if confirm()/generation() stop forgetting on Redis down (the blip test passes anyway:
    its refused revocation forgets through _script). This process only serves requests while Redis
    is down; another revokes the key in a way no process is told of; Redis returns with its data."""
    from tests.agents.test_audit_keycache_blip import PersistentRedis
    from tests.fault_helpers import use_cache
    from tracemem_core import shared_cache

    agent, key = agent_and_key
    redis = PersistentRedis().start()
    use_cache(settings, redis.url)
    try:
        assert _get(key).status_code == 200  # remembered
        redis.stop()
        shared_cache.reset()
        assert _get(key).status_code == 200  # served, from the database
        AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now())  # told to no process
        redis.start()
        shared_cache.reset()
        assert _get(key).status_code == 401
    finally:
        redis.stop()
        shared_cache.reset()


# The database's notification of credential changes (agents migration 0004, audit2 K1).


@pytest.mark.django_db(transaction=True)
def test_a_touch_of_last_used_at_alone_notifies_nobody(agent_and_key: tuple[Agent, str]) -> None:
    """Authentication writes ``last_used_at`` now and then: were that a credentials change, each
    such write would empty every process's remembered keys."""
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) == []  # remembered
    AgentKey.objects.filter(agent=agent).update(last_used_at=timezone.now())
    notifications_delivered()
    assert _key_queries_of_get(key) == [], "a last_used_at write made this process forget its keys"


@pytest.mark.django_db(transaction=True)
def test_a_key_deleted_in_sql_stops(agent_and_key: tuple[Agent, str]) -> None:
    agent, key = agent_and_key
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) == []  # remembered
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM agents_agentkey WHERE agent_id = %s", [agent.pk])
    notifications_delivered()
    assert _get(key).status_code == 401


def test_nothing_is_remembered_while_the_process_hears_no_credentials_notification(
    agent_and_key: tuple[Agent, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listening connection down (or not connected yet): a change made by SQL would not reach
    this process, so every request checks the database."""
    from tracemem_core import waits

    _, key = agent_and_key
    monkeypatch.setattr(waits.hub(), "listening", lambda: False)
    assert _get(key).status_code == 200
    assert _key_queries_of_get(key) != []


def test_a_key_read_before_a_notification_is_not_remembered_after_it(
    agent_and_key: tuple[Agent, str],
) -> None:
    """A request read the rows, a change's notification made this process forget, then the request
    came to remember what it read: not kept (it may be the row as it was before the change)."""
    agent, key = agent_and_key
    read_in = keycache.epoch()
    current = keycache.generation()
    row = AgentKey.objects.select_related("agent").get(agent=agent)
    keycache.forget_local()  # the notification, between the database read and remember()
    keycache.remember("digest", row, current, read_in)
    assert keycache.recall("digest") is None
    keycache.remember("digest", row, current, keycache.epoch())
    assert keycache.recall("digest") is not None  # the premise: it is kept when nothing came between
