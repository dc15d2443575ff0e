"""Shared fixtures. Tests run on real PostgreSQL (and real Redis where they need it).

Under CI (``CI=true``) a missing service fails the run; it never turns into a skip.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pgtrigger
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.testcases import TransactionTestCase

from agents import services as agent_services
from agents.models import Agent
from tracemem_site.actor import Actor

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(name: str, available: bool, how_to_start: str) -> None:
    """Fail under CI, skip elsewhere, when a service a test needs is not there."""
    if available:
        return
    message = f"{name} is not reachable; start it with: {how_to_start}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine != "django.db.backends.postgresql":
        raise pytest.UsageError(
            "the test suite runs on PostgreSQL: set DATABASE_URL (make test does) — got " + engine
        )


# TransactionTestCase empties tables with TRUNCATE, which the trace's append-only trigger refuses
# by design; test teardown is the one place allowed to bypass it.
_original_teardown = TransactionTestCase._fixture_teardown


@contextmanager
def _audit_log_truncatable() -> Iterator[None]:
    # The audit log's triggers are plain SQL (no setting skips them): only the table's owner, which
    # the test database user is, can switch one off, and only for this flush.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_auditentry_no_truncate")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE ALWAYS TRIGGER audit_auditentry_no_truncate")


def _teardown_ignoring_trace_protection(self: TransactionTestCase) -> None:
    with (
        pgtrigger.ignore("decisions.TraceEvent:no_truncate", "decisions.TraceEvent:append_only"),
        _audit_log_truncatable(),
    ):
        _original_teardown(self)


TransactionTestCase._fixture_teardown = _teardown_ignoring_trace_protection  # type: ignore[method-assign]


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    require_service(
        "Redis", port_open("127.0.0.1", 6379), "redis-server --daemonize yes --port 6379 --save ''"
    )
    return url


@pytest.fixture
def make_agent(db: Any) -> Callable[..., tuple[Agent, str]]:
    counter = {"n": 0}

    def factory(name: str | None = None, owner: Any = None) -> tuple[Agent, str]:
        counter["n"] += 1
        agent = agent_services.agent_create(
            actor=Actor.system(), name=name or f"agent-{counter['n']}", owner=owner
        )
        issued = agent_services.agent_key_issue(actor=Actor.system(), agent=agent)
        return agent, issued.secret

    return factory


@pytest.fixture
def agent_and_key(make_agent: Callable[..., tuple[Agent, str]]) -> tuple[Agent, str]:
    return make_agent("test-agent")


@pytest.fixture
def agent_actor(agent_and_key: tuple[Agent, str]) -> Actor:
    return Actor.for_agent(agent_and_key[0])


class AgentClient:
    """A Django test client that speaks JSON with an agent key."""

    def __init__(self, key: str) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Agent {key}"}

    def get(self, path: str, **extra: Any) -> Any:
        return self.client.get(path, **{**self.headers, **extra})

    def post(self, path: str, data: Any = None, **extra: Any) -> Any:
        return self.client.post(
            path,
            data if data is not None else {},
            content_type="application/json",
            **{**self.headers, **extra},
        )


@pytest.fixture
def api(agent_and_key: tuple[Agent, str]) -> Iterator[AgentClient]:
    yield AgentClient(agent_and_key[1])
