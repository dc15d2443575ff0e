"""The rate limit's store (the shared cache, Redis in production) going away never fails a request.

SPEC §9: a Redis outage delays a notification, never the request. The rate limit falls back to a
per-process count while its store is down, logs it once, and counts every failed cache call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import RedisServer
from tests.mcp_helpers import mcp_post
from tracemem_site import metrics, shared_cache

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    """The cache on a redis-server of this test's own; the Celery broker stays the shared one."""
    server = RedisServer().start()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": settings.CACHES["default"].get("OPTIONS", {}),
        }
    }
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
    before = metrics.value("tracemem_cache_errors_total", use="rate_limit")

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
    assert metrics.value("tracemem_cache_errors_total", use="rate_limit") > before
    warnings = [r for r in caplog.records if "rate limit" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # logged once, not per request
    assert "per-process" in warnings[0].getMessage()


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
