"""The rate limit's store (the shared cache, Redis in production) going away never fails a request.

docs/contract/approvals.md: a Redis outage delays a notification, never the request. The rate limit falls back to a
per-process count while its store is down, logs it once, and counts every failed cache call.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from approvals.models import WebhookEndpoint
from approvals.tasks import approvals_tick
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import RedisServer, use_broker, use_cache, within
from tests.mcp_helpers import mcp_post
from tracemem_core import metrics, shared_cache

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    """The cache on a redis-server of this test's own; the Celery broker stays the shared one."""
    server = RedisServer().start()
    use_cache(settings, server.url)
    yield server
    server.stop()
    shared_cache.reset()  # the next test starts with the store believed up


def test_with_the_cache_down_every_agent_call_goes_through_and_approval_is_recorded(
    own_redis: RedisServer, make_agent: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.TRACEMEM_AGENT_RATE_LIMIT == "1200/minute"  # the shipped default
    _, key = make_agent()
    api = AgentClient(key)
    make_route("route_finance")
    assert api.get("/api/v1/capabilities").status_code == 200
    uses = ("credentials_generation", "rate_limit")  # the cache's first two users on a request
    before = sum(metrics.value("tracemem_cache_errors_total", use=use) for use in uses)

    own_redis.stop()
    started = time.monotonic()
    assert api.get("/api/v1/capabilities").status_code == 200
    mcp = mcp_post(key, "capabilities_get", request_id=7)
    assert mcp.status_code == 200 and mcp.json()["result"]["isError"] is False
    decision_id = open_decision(api)
    answer = request_approval(api, decision_id, approval_route_id="route_finance")
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "pending"
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert (got["status"], got["approval_status"]) == ("needs_approval", "pending")
    # A dead store must not cost every request a connect timeout.
    assert time.monotonic() - started < 3
    assert sum(metrics.value("tracemem_cache_errors_total", use=use) for use in uses) > before
    warnings = [
        r for r in caplog.records if "is unavailable" in r.getMessage() and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # logged once, not per request
    # Authentication is the first to find it down, and says what it does meanwhile.
    assert "checking every agent key in the database" in warnings[0].getMessage()


def test_while_the_store_is_down_the_limit_is_kept_per_process(
    own_redis: RedisServer, make_agent: Any, settings: Any
) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "3/day"
    _, key = make_agent()
    api = AgentClient(key)
    own_redis.stop()
    codes = [api.get("/api/v1/capabilities").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = api.get("/api/v1/capabilities")
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused["Retry-After"]) >= 1


def test_the_shared_count_is_used_again_once_the_store_is_back(
    own_redis: RedisServer, make_agent: Any, settings: Any
) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "2/day"
    settings.TRACEMEM_CACHE_RETRY_SECONDS = 0  # probe the store again on the next request
    _, key = make_agent()
    api = AgentClient(key)
    own_redis.stop()
    assert api.get("/api/v1/capabilities").status_code == 200
    own_redis.start()
    # Back on the shared count, which had seen nothing: two more calls pass, the third is refused.
    assert [api.get("/api/v1/capabilities").status_code for _ in range(3)] == [200, 200, 429]


@pytest.fixture
def hung_redis(settings: Any) -> Iterator[RedisServer]:
    """The cache AND the broker on one redis-server of this test's own (as deployed: one Redis)."""
    server = RedisServer().start()
    use_cache(settings, server.url)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    use_broker(server.url)
    yield server
    server.stop()
    use_broker(settings.CELERY_BROKER_URL)
    shared_cache.reset()


@pytest.mark.django_db(transaction=True)  # so the request's on-commit publish really runs
def test_a_hung_redis_never_holds_a_request_and_readyz_names_the_broker(
    hung_redis: RedisServer, make_agent: Any, settings: Any
) -> None:
    assert settings.TRACEMEM_AGENT_RATE_LIMIT == "1200/minute"  # the shipped default
    _, key = make_agent()
    api = AgentClient(key)
    WebhookEndpoint.objects.create(
        name="ops",
        url="http://127.0.0.1:9/hook",  # never called: no worker runs here
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": "ops"}])
    decisions = [open_decision(api) for _ in range(3)]
    # Accepts connections, never answers: no error to fail fast on, only timeouts.
    hung_redis.pause()
    took = []
    for decision_id in decisions:
        answer, seconds = within(
            20, lambda d=decision_id: request_approval(api, d, approval_route_id="route_finance")
        )
        assert answer.status_code == 201, answer.content
        took.append(seconds)
    assert took[0] <= 3, took  # the first call finds out (bounded timeouts) ...
    assert max(took[1:]) <= 1, took  # ... and the next ones do not wait on it again
    got = api.get(f"/api/v1/decisions/{decisions[0]}").json()
    assert (got["status"], got["delivery"]["status"]) == ("needs_approval", "pending")
    # The tick in this process says what it really queued: nothing, the broker being down.
    assert within(20, approvals_tick)[0] == {"expired": 0, "redispatched": 0}
    ready, seconds = within(20, lambda: Client().get("/readyz"))
    assert ready.status_code == 503 and seconds <= 5, seconds
    assert ready.json()["checks"]["broker"].startswith("error")
