"""Audit (issue 17): a revocation made while Redis is unreachable must not be undone when Redis
answers again with the generation it had before (a blip, a failover, a paused server: the data
survives, the revoking process's new generation was never written)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, AgentKey
from agents.services import registry as agent_services
from tests.fault_helpers import RedisServer, use_cache
from tracemem_core import shared_cache
from tracemem_core.actor import Actor
from tracemem_core.errors import Unavailable


class PersistentRedis(RedisServer):
    """A Redis that keeps its data across a restart, as docker-compose.yml runs it (appendonly)."""

    def start(self) -> PersistentRedis:
        import shutil
        import subprocess
        import tempfile

        from tests.fault_helpers import port_open, wait_for

        self.dir = getattr(self, "dir", None) or tempfile.mkdtemp()
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 10, f"redis-server on port {self.port}")
        return self


pytestmark = pytest.mark.django_db


def _get(key: str) -> Any:
    return Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}")


def test_a_key_revoked_during_a_redis_blip_stays_revoked_when_redis_returns(
    agent_and_key: tuple[Agent, str], settings: Any
) -> None:
    """Fixed by agents/keycache.py: a revocation Redis cannot be told of is refused (nothing is
    changed), and a process that found Redis down forgets every key it remembered, so a revocation
    the other processes were never told of (a shell's ``QuerySet.update``, which no signal sees) is
    not undone when Redis returns with the generation it had."""
    agent, key = agent_and_key
    redis = PersistentRedis().start()
    use_cache(settings, redis.url)
    try:
        assert _get(key).status_code == 200  # remembered under the current generation
        assert _get(key).status_code == 200
        redis.stop()  # restarting (an upgrade, an OOM kill); with compose's appendonly its data survives
        shared_cache.reset()
        with pytest.raises(Unavailable) as refused:
            agent_services.agent_key_revoke(actor=Actor.system(), key=AgentKey.objects.get(agent=agent))
        assert "nothing was changed" in refused.value.message
        assert AgentKey.objects.get(agent=agent).revoked_at is None  # refused: not applied
        assert _get(key).status_code == 200  # while Redis is down: checked in the database
        AgentKey.objects.filter(agent=agent).update(revoked_at=timezone.now())  # told to no process
        assert _get(key).status_code == 401
        redis.start()
        shared_cache.reset()  # the breaker's 5 s are over
        for _ in range(3):
            response = _get(key)
            assert response.status_code == 401, (response.status_code, response.content[:200])
    finally:
        redis.stop()
        shared_cache.reset()


def test_without_a_shared_cache_no_key_is_remembered(agent_and_key: tuple[Agent, str], settings: Any) -> None:
    """Without REDIS_URL the cache is Django's LocMemCache, one per process: a revocation made by
    another web worker, the admin site in another worker or a shell never changes this process's
    generation, so a remembered key kept working for up to keycache.MAX_AGE (60 s; shown over
    scripts/serve.sh with two workers and a revocation from `manage.py shell`). Nothing may be
    remembered then: every request checks the database."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _, key = agent_and_key
    assert _get(key).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert _get(key).status_code == 200
    assert [q for q in queries.captured_queries if '"agents_agentkey"' in q["sql"]], "key came from memory"
