"""A request's database connection is checked before its first query without a round trip (issue 17,
docs/performance.md): a connection the server ended while it sat idle between requests (a restart, an
administrator's pg_terminate_backend, an idle timeout) has left an error or end-of-file unread on its
socket, so it is replaced and the request goes through; a healthy one costs no ``SELECT 1``."""

from __future__ import annotations

from typing import Any
from unittest import mock

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.test import Client as DjangoClient

from tests.fault_helpers import terminate_backend, wait_backend_gone

pytestmark = pytest.mark.django_db(transaction=True)


class ServerLikeClient(DjangoClient):
    """The test client, but each request starts as under a server: Django's test client leaves out
    ``close_old_connections`` (request_started), where the connection check is armed."""

    def request(self, **request: Any) -> Any:
        close_old_connections()
        return super().request(**request)


def _decision(client: DjangoClient) -> str:
    created = client.post(
        "/api/v1/decisions",
        {"intent": "deploy.service.api", "automation_mode": "autonomous"},
        "application/json",
    )
    assert created.status_code == 201, created.content
    return f"/api/v1/decisions/{created.json()['decision_id']}"


def test_a_connection_ended_while_idle_is_replaced_and_the_request_succeeds(make_agent: Any) -> None:
    _, key = make_agent()
    client = ServerLikeClient(HTTP_AUTHORIZATION=f"Agent {key}")
    path = _decision(client)
    before = connection.connection.info.backend_pid
    terminate_backend(before)
    wait_backend_gone(before)  # as when a restart or an idle timeout ended it between two requests
    response = client.get(path)
    assert response.status_code == 200, response.content
    assert connection.connection.info.backend_pid != before


def test_a_healthy_connection_is_reused_without_a_select_1(make_agent: Any) -> None:
    _, key = make_agent()
    client = ServerLikeClient(HTTP_AUTHORIZATION=f"Agent {key}")
    path = _decision(client)
    before = connection.connection.info.backend_pid
    real = psycopg.Cursor.execute
    sent: list[str] = []

    def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return real(self, query, *args, **kwargs)

    with mock.patch.object(psycopg.Cursor, "execute", counting):
        assert client.get(path).status_code == 200
    assert connection.connection.info.backend_pid == before
    assert [q for q in sent if q.strip().upper() == "SELECT 1"] == []


def test_the_check_works_with_descriptors_above_1024(make_agent: Any) -> None:
    """A busy front holds hundreds of sockets; select() cannot look at a descriptor above 1024."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.fail(f"this test needs RLIMIT_NOFILE >= 1200 (hard limit is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    _, key = make_agent()
    client = ServerLikeClient(HTTP_AUTHORIZATION=f"Agent {key}")
    path = _decision(client)
    connection.close()
    filler = [
        os.open(os.devnull, os.O_RDONLY) for _ in range(1100)
    ]  # the next connection's socket is above 1024
    try:
        assert client.get(path).status_code == 200
        assert connection.connection.fileno() > 1024
        before = connection.connection.info.backend_pid
        assert client.get(path).status_code == 200
        assert connection.connection.info.backend_pid == before  # reused, not reopened on every request
    finally:
        connection.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
