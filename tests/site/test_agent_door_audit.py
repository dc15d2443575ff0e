"""The agent door (tracemem_site/agent_door.py) under requests built to find where it parts from
Django: odd paths, bodies Django does not read, a browser session riding along with an agent key,
settings the door does not implement, MCP refusals (rate limit, outage), an unhandled error.

Each request goes through ``front.application`` twice, with ``TRACEMEM_AGENT_DOOR`` off (Django and
DRF answer) and on; the door must answer what Django answers, or leave the request to Django. The
general parity cases are in tests/site/test_agent_door.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
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
from decisions.api import DecisionCreateView
from decisions.models import Decision
from tests.fault_helpers import DatabaseOutage
from tests.front_helpers import own_pool, through_front
from tracemem_core.actor import Actor
from tracemem_core.requestid import current_request_id
from tracemem_site import agent_door

pytestmark = pytest.mark.django_db(transaction=True)

CREATE = {"intent": "deploy.service.api", "automation_mode": "autonomous"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: Any, settings: Any) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """The front's pool for this test alone (one thread), its database connection closed after it."""
    settings.ALLOWED_HOSTS = ["testserver"]
    with own_pool(monkeypatch) as pool:
        yield pool


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
    answered: list[Any] = []
    real = agent_door.answer

    def spy(*args: Any) -> Any:
        answered.append(real(*args))
        return answered[-1]

    size = max(1, -(-len(body) // chunks))
    with mock.patch.object(agent_door, "answer", side_effect=spy):
        sent = through_front(method, path, body, headers, chunk=size, content_length=content_length)
    return Answer(sent.status, sent.headers, sent.body, any(a is not None for a in answered))


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


# --- MCP refusals -------------------------------------------------------------------------------


def _tool_call(name: str, arguments: dict[str, Any]) -> bytes:
    message = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return json.dumps(message).encode()


def test_an_mcp_call_over_the_rate_limit_is_refused_alike(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "2/hour"
    answers = {}
    for door in (False, True):
        agent, key = make_agent()
        did = _open(agent)
        headers = [("authorization", f"Bearer {key}"), ("content-type", "application/json")]
        raw = _tool_call("decision_get", {"decision_id": did})
        answers[door] = [call(settings, door, "POST", "/mcp", raw, headers) for _ in range(3)]
    assert [a.status for a in answers[False]] == [200, 200, 429]
    assert [a.status for a in answers[True]] == [200, 200, 429]
    assert _error(answers[True][2]) == _error(answers[False][2]) == (429, ("rate_limited", None))
    assert [a.door for a in answers[True]] == [True, True, True]
    assert answers[True][2].header("retry-after") is not None


def test_an_mcp_call_during_a_database_outage_gets_mcps_outage_answer_alike(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    """A database outage while authenticating (a key not remembered yet): JSON-RPC, HTTP 200,
    ``[unavailable]`` and "not applied", Retry-After."""
    answers = {}
    for door in (False, True):
        _, key = make_agent()
        headers = [("authorization", f"Bearer {key}"), ("content-type", "application/json")]
        outage = DatabaseOutage()
        outage.begin()
        try:
            answers[door] = call(
                settings, door, "POST", "/mcp", _tool_call("decision_create", CREATE), headers
            )
        finally:
            outage.end()
    django, door = answers[False], answers[True]
    assert django.status == 200 and "[unavailable]" in django.body.decode(), django.body
    assert door.door and (door.status, door.body) == (django.status, django.body)
    assert door.header("retry-after") == django.header("retry-after") is not None


# --- an unhandled error, and the thread after it ---------------------------------------------------


def test_an_unhandled_error_is_answered_alike_and_leaves_the_thread_clean(
    settings: Any,
    make_agent: Callable[..., tuple[Agent, str]],
    one_thread: concurrent.futures.ThreadPoolExecutor,
    caplog: Any,
) -> None:
    _, key = make_agent()
    raw = json.dumps(CREATE).encode()
    secret_headers = agent_headers(key, ("x-request-id", "audit-1"))

    def broken(actor: Actor, args: Any) -> Any:
        raise RuntimeError("boom")

    answers = {}
    with mock.patch.object(DecisionCreateView, "answer", staticmethod(broken)):
        for door in (False, True):
            caplog.clear()
            with caplog.at_level(logging.INFO):
                answers[door] = call(settings, door, "POST", "/api/v1/decisions", raw, secret_headers)
            assert key not in caplog.text and key[5:] not in caplog.text
    assert answers[False].status == 500 and answers[True].door
    assert (answers[True].status, answers[True].body) == (answers[False].status, answers[False].body)
    assert answers[True].json()["request_id"] == "audit-1"
    # The pool thread: no request id left bound, a usable connection, no transaction left open.
    state = one_thread.submit(lambda: (current_request_id(), connections["default"].in_atomic_block)).result()
    assert state == (None, False)
    after = call(settings, True, "POST", "/api/v1/decisions", raw, agent_headers(key))
    assert (after.status, after.door) == (201, True)
    assert after.header("x-request-id") != "audit-1"


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
    found = agent_door.route(scope, b"")
    assert found is not None and found.authorization == f"Agent {key}"
    assert key not in repr(found)
