"""The agent door (tracemem_site/agent_door.py) under requests built to find where it parts from
Django: odd paths, bodies Django does not read, a browser session riding along with an agent key,
settings the door does not implement, MCP refusals (rate limit, outage), an unhandled error.

Each request goes through ``front.application`` twice, with ``TRACEMEM_AGENT_DOOR`` off (Django and
DRF answer) and on; the door must answer what Django answers, or leave the request to Django. The
general parity cases are in tests/site/test_agent_door.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from agents.models import Agent
from decisions import services as decision_services
from decisions.models import Decision
from tracemem_core.actor import Actor
from tracemem_site import agent_door, front

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = {"intent": "deploy.service.api", "automation_mode": "autonomous"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: Any, settings: Any) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """The front's pool for this test alone (one thread), its database connection closed after it."""
    settings.ALLOWED_HOSTS = ["testserver"]
    pool = concurrent.futures.ThreadPoolExecutor(1)
    monkeypatch.setattr(front, "_pool", pool)
    monkeypatch.setattr(front._streaming, "executor", pool)
    yield pool
    pool.submit(connections.close_all).result()
    pool.shutdown()


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, door: bool) -> None:
        self.status, self.headers, self.body, self.door = status, headers, body, door

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    settings: Any,
    door: bool,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    content_length: bool = True,
    chunks: int = 1,
) -> Answer:
    """One request through the front as uvicorn hands it over; ``door``: whether the door is on.
    ``content_length`` False: sent chunked (no Content-Length, as uvicorn passes such a request on)."""
    settings.TRACEMEM_AGENT_DOOR = door
    headers = [("host", "testserver"), *(headers or [])]
    if body and content_length:
        headers.append(("content-length", str(len(body))))
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    answered: list[Any] = []
    real = agent_door.answer

    def spy(*args: Any) -> Any:
        answered.append(real(*args))
        return answered[-1]

    with mock.patch.object(agent_door, "answer", side_effect=spy):
        asyncio.run(front.application(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    return Answer(start["status"], out, content, any(a is not None for a in answered))


def agent_headers(key: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("authorization", f"Agent {key}"), ("content-type", "application/json"), *extra]


def _error(answer: Answer) -> tuple[int, Any]:
    """Status and error code (or the JSON-RPC shape) of an answer, ids and request ids left out."""
    try:
        body = answer.json()
    except ValueError:
        return answer.status, answer.body
    if isinstance(body, dict) and "error" in body and isinstance(body["error"], dict):
        return answer.status, (body["error"].get("code"), body["error"].get("details", {}).get("reason"))
    return answer.status, body


def _open(agent: Agent) -> str:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="autonomous"
    ).decision_id


# --- the path: a trailing newline is not the operation ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/decisions\n", CREATE),
        ("POST", "/api/v1/decisions/{did}/context\n", {"context": {"a": 1}}),
        (
            "POST",
            "/mcp\n",
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "decision_create", "arguments": CREATE},
            },
        ),
    ],
    ids=["create", "context", "mcp"],
)
def test_a_path_ending_in_a_newline_is_not_an_operation(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]], method: str, path: str, body: Any
) -> None:
    """uvicorn decodes ``%0A``; Django's URL patterns end with ``\\Z``, the door's must not match more."""
    agent, key = make_agent()
    path = path.replace("{did}", _open(agent))
    raw = json.dumps(body).encode() if body is not None else b""
    before = Decision.objects.count()
    django = call(settings, False, method, path, raw, agent_headers(key))
    assert django.status == 404, django.body
    door = call(settings, True, method, path, raw, agent_headers(key))
    assert (door.status, door.door) == (404, False), door.body
    assert Decision.objects.count() == before


# --- a body Django does not read ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/decisions", CREATE),
        (
            "/mcp",
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "decision_create", "arguments": CREATE},
            },
        ),
    ],
    ids=["rest", "mcp"],
)
def test_a_body_sent_without_content_length_is_read_as_django_reads_it(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]], path: str, body: Any
) -> None:
    """Chunked transfer encoding: no Content-Length reaches the WSGI environ, and DRF reads no body
    then. The door must not act on a body Django would not have seen."""
    _, key = make_agent()
    raw = json.dumps(body).encode()
    headers = agent_headers(key, ("transfer-encoding", "chunked"))
    before = Decision.objects.count()
    django = call(settings, False, "POST", path, raw, headers, content_length=False, chunks=2)
    assert Decision.objects.count() == before, "Django read no body: nothing is created"
    door = call(settings, True, "POST", path, raw, headers, content_length=False, chunks=2)
    assert Decision.objects.count() == before, door.body
    assert (door.status, door.door) == (django.status, False)


# --- a browser session riding along with an agent key ----------------------------------------------


def test_an_agent_call_carrying_a_session_that_owes_its_second_factor_is_refused_alike(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    """SecondFactorMiddleware: a session that must still give its TOTP code reaches no API call,
    whatever else the request carries."""
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    admin = User.objects.create_superuser("root", "root@example.com", "pw-long-enough")
    browser = Client()
    browser.force_login(admin)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    _, key = make_agent()
    headers = agent_headers(key, ("cookie", cookie))
    raw = json.dumps(CREATE).encode()
    before = Decision.objects.count()
    django = call(settings, False, "POST", "/api/v1/decisions", raw, headers)
    assert django.status == 403 and django.json()["error"]["details"]["reason"] == "second_factor_required"
    door = call(settings, True, "POST", "/api/v1/decisions", raw, headers)
    assert (door.status, door.body) == (django.status, django.body)
    assert Decision.objects.count() == before
    # Any other cookie (a load balancer's) does not keep the door from answering.
    other = call(settings, True, "POST", "/api/v1/decisions", raw, agent_headers(key, ("cookie", "AWSALB=x")))
    assert (other.status, other.door) == (201, True), other.body


# --- settings the door does not implement ----------------------------------------------------------


@pytest.mark.parametrize("setting", ["DISALLOWED_USER_AGENTS", "PREPEND_WWW"])
def test_a_common_middleware_setting_the_door_does_not_implement_sends_every_call_to_django(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]], setting: str
) -> None:
    if setting == "DISALLOWED_USER_AGENTS":
        settings.DISALLOWED_USER_AGENTS = [re.compile(r"badbot")]
        expected = 403
    else:
        settings.PREPEND_WWW = True
        expected = 301
    _, key = make_agent()
    headers = agent_headers(key, ("user-agent", "badbot/1.0"))
    raw = json.dumps(CREATE).encode()
    django = call(settings, False, "POST", "/api/v1/decisions", raw, headers)
    assert django.status == expected
    door = call(settings, True, "POST", "/api/v1/decisions", raw, headers)
    assert (door.status, door.door) == (expected, False)


# --- the key, wherever the door holds it ----------------------------------------------------------


def test_the_call_the_door_holds_does_not_show_the_key(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    """A traceback with locals (an error tracker) formats the door's ``Call``: never the key in it."""
    _, key = make_agent()
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/decisions/x",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Agent {key}".encode())],
    }
    found = agent_door.route(scope)
    assert found is not None and found.authorization == f"Agent {key}"
    assert key not in repr(found)
