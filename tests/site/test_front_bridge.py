"""The production front's bridge to Django (tracemem_site/front.py, issue 17): a request whose body
fits in memory goes into the thread pool once and comes back once with the whole response; nothing
else crosses between the event loop and the threads (each crossing waits for the other thread to get
the GIL, which under load cost more than the request: docs/performance.md). What the client
receives is exactly what Django answered; larger bodies and responses still stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from tests.front_helpers import own_pool, through_front
from tracemem_site import front

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: Any) -> Any:
    """The front's pool for this test alone, its thread's database connection closed after it."""
    with own_pool(monkeypatch):
        yield


last_body_messages = 0


def _call(
    method: str, path: str, body: bytes = b"", chunk: int = 0, **headers: str
) -> tuple[int, dict, bytes, int]:
    """One request through ``front.application``; returns status, headers, body and thread crossings."""
    crossings = 0
    real = asyncio.run_coroutine_threadsafe

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal crossings
        crossings += 1
        return real(*args, **kwargs)

    with mock.patch.object(asyncio, "run_coroutine_threadsafe", counted):
        sent = through_front(method, path, body, list(headers.items()), chunk=chunk)
    global last_body_messages
    last_body_messages = sent.body_messages
    return sent.status, dict(sent.headers), sent.body, crossings


def test_a_request_crosses_into_the_thread_pool_once_and_gets_djangos_answer(
    make_agent: Any, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    _, key = make_agent()
    auth = {"authorization": f"Agent {key}", "content-type": "application/json"}
    status, headers, content, crossings = _call(
        "POST",
        "/api/v1/decisions",
        json.dumps({"intent": "deploy.service.api", "automation_mode": "autonomous"}).encode(),
        **auth,
    )
    assert status == 201, content
    assert crossings == 0
    decision = json.loads(content)
    status, headers, content, crossings = _call("GET", f"/api/v1/decisions/{decision['decision_id']}", **auth)
    assert (status, crossings) == (200, 0)
    assert headers["content-type"] == "application/json"
    expected = Client(HTTP_AUTHORIZATION=f"Agent {key}").get(f"/api/v1/decisions/{decision['decision_id']}")
    assert json.loads(content) == expected.json()
    assert "x-request-id" in headers


def test_a_body_sent_in_pieces_is_read_whole_before_django_runs(make_agent: Any, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    _, key = make_agent()
    body = json.dumps(
        {"intent": "deploy.service.api", "automation_mode": "autonomous", "metadata": {"x": "y" * 5000}}
    )
    status, _, content, crossings = _call(
        "POST",
        "/api/v1/decisions",
        body.encode(),
        chunk=1000,
        authorization=f"Agent {key}",
        **{"content-type": "application/json"},
    )
    assert (status, crossings) == (201, 0), content
    assert json.loads(content)["decision_id"].startswith("TMEM_")


def test_a_body_over_the_memory_limit_still_reaches_django_which_refuses_it(
    make_agent: Any, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    _, key = make_agent()
    body = b'{"intent": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    status, _, content, _ = _call(
        "POST",
        "/api/v1/decisions",
        body,
        chunk=65536,
        authorization=f"Agent {key}",
        **{"content-type": "application/json"},
    )
    assert status == 413, content


def test_a_large_response_streams_in_pieces(settings: Any, monkeypatch: Any) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    monkeypatch.setattr(front, "BUFFER_LIMIT", 1000)
    status, _, content, crossings = _call("GET", "/api/schema/")
    expected = Client().get("/api/schema/")
    assert status == expected.status_code == 200
    assert content == expected.content and len(content) > 1000
    assert last_body_messages >= 2  # sent on once past the limit, not held to the end


def test_a_trip_into_the_pool_brings_back_its_result_or_its_exception_in_the_requests_context() -> None:
    """front._in_pool: the function runs in a pool thread, in a copy of the caller's context (what it
    sets there stays there), and its result or exception comes back to the awaiting request."""
    import contextvars
    import threading

    var: contextvars.ContextVar[str] = contextvars.ContextVar("front_test", default="unset")

    def look(suffix: str) -> tuple[str, bool]:
        seen = var.get()
        var.set("changed in the thread")
        return seen + suffix, threading.current_thread() is not threading.main_thread()

    def fail() -> None:
        raise LookupError("from the thread")

    async def main() -> None:
        var.set("the request's")
        assert await front._in_pool(look, "!") == ("the request's!", True)
        assert var.get() == "the request's"
        with pytest.raises(LookupError, match="from the thread"):
            await front._in_pool(fail)

    asyncio.run(main())


def test_a_trip_cancelled_before_its_thread_is_free_never_runs() -> None:
    """As with run_in_executor: a request cancelled while its work waits for a thread leaves no work behind."""
    import threading

    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        busy = front._pool.submit(release.wait, 10)  # the test's pool has one thread
        waiting = asyncio.ensure_future(front._in_pool(ran.append, "ran"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        busy.result(10)
        assert await front._in_pool(ran.append, "the next one") is None

    asyncio.run(main())
    assert ran == ["the next one"]
