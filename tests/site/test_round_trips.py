"""What one authenticated API request costs in round trips (issue 17, docs/performance.md).

Counted at the sockets: every ``send_packed_command`` of redis-py is one write to Redis followed by
one read (a pipeline is one), every statement Django runs is one round trip to PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
import redis.connection
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.mcp_helpers import mcp_post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def counted_limit(settings: Any) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "1000/minute"  # counted on every request, as in production


def _redis_round_trips(call: Any) -> tuple[int, Any]:
    real = redis.connection.AbstractConnection.send_packed_command
    sent: list[bytes] = []

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        return real(self, command, check_health)

    with mock.patch.object(redis.connection.AbstractConnection, "send_packed_command", counting):
        response = call()
    return len(sent), response


def test_an_authenticated_read_is_one_redis_round_trip_and_one_query(settings: Any, make_agent: Any) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.fail("this test needs REDIS_URL (the suite's Redis)")
    _, key = make_agent()
    client = Client(HTTP_AUTHORIZATION=f"Agent {key}")
    created = client.post(
        "/api/v1/decisions",
        {"intent": "deploy.service.api", "automation_mode": "autonomous"},
        "application/json",
    )
    path = f"/api/v1/decisions/{created.json()['decision_id']}"  # and the key is now remembered
    with CaptureQueriesContext(connection) as queries:
        trips, response = _redis_round_trips(lambda: client.get(path))
    assert response.status_code == 200
    # The credentials generation read and the rate limit's INCR + EXPIRE in one script.
    assert trips == 1
    assert len(queries) == 1, [q["sql"] for q in queries]  # the decision; the key came from memory


def test_an_mcp_tool_call_is_one_redis_round_trip_too(settings: Any, make_agent: Any) -> None:
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.fail("this test needs REDIS_URL (the suite's Redis)")
    _, key = make_agent()
    created = mcp_post(
        key, "decision_create", {"intent": "deploy.service.api", "automation_mode": "autonomous"}
    )
    decision_id = json.loads(created.json()["result"]["content"][0]["text"])["decision_id"]
    with CaptureQueriesContext(connection) as queries:
        trips, response = _redis_round_trips(
            lambda: mcp_post(key, "decision_get", {"decision_id": decision_id})
        )
    assert response.status_code == 200 and response.json()["result"]["isError"] is False
    assert trips == 1  # the same authentication and count as the REST door's
    assert len(queries) == 1, [q["sql"] for q in queries]
