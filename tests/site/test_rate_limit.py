"""docs/contract/errors.md 429 rate_limited: one budget per agent across REST and MCP, counted in the shared cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from tracemem_site.throttling import parse_rate

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
