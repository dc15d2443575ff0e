"""The agent door (tracemem_site/agent_door.py, issue 17) answers exactly what Django and DRF answer.

The production front (tracemem_site/front.py) lets ``agent_door.answer`` answer the hottest agent calls
without Django's middleware chain and DRF. Every test here sends the same request through
``front.application`` twice, with ``TRACEMEM_AGENT_DOOR`` off (Django answers) and on (the door
answers, or declines and Django answers), and compares everything a client, an operator or an auditor
can see: the status, every header (but ``Date`` and ``Content-Length``; ``X-Request-ID`` by presence,
and by value when the client sent one), the body byte for byte once the values two calls must differ
in (fresh ids, clocks, the request id) are replaced by placeholders, the request metrics, the warning
log lines with their request id, and what was written (decisions and their trace events, the hash
chain valid). A spy on ``agent_door.answer`` checks that the door really answered when it should and
was not asked at all when off.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client import Counter, Histogram

from agents import keycache, keys
from agents.models import Agent, AgentKey
from agents.services import registry as agent_registry
from decisions import api as decisions_api
from decisions import services as decision_services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from policies.services import authoring as policy_authoring
from tests.fault_helpers import DatabaseOutage, RedisServer, terminate_backend, use_cache
from tests.front_helpers import own_pool, through_front
from tracemem_core import metrics, shared_cache
from tracemem_core.actor import Actor
from tracemem_core.requestid import current_request_id
from tracemem_site import agent_door, front

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = Actor.system("test")
MODES = ("django", "door")  # door off, then door on


# --- the front, called as uvicorn calls it (adapted from tests/site/test_front_bridge.py) ---------


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: Any, settings: Any) -> Iterator[None]:
    """The front's pool for this test alone, its thread's database connection closed after it."""
    settings.ALLOWED_HOSTS = ["testserver"]
    with own_pool(monkeypatch):
        yield


@pytest.fixture
def reload_middleware() -> Iterator[Callable[[], None]]:
    """Django's SecurityMiddleware reads its settings (HSTS, SSL redirect) once, when the WSGI handler
    loads the middleware, as production does at start-up: a test that changes them reloads it, and the
    handler gets its original chain back afterwards."""
    handler = front.django_wsgi
    assert isinstance(handler, WSGIHandler)
    names = (
        "_view_middleware",
        "_template_response_middleware",
        "_exception_middleware",
        "_middleware_chain",
    )
    saved = {name: getattr(handler, name) for name in names}
    yield handler.load_middleware
    for name, value in saved.items():
        setattr(handler, name, value)


# --- the world both runs see ------------------------------------------------------------------

CODE_POLICY: dict[str, Any] = {
    "name": "Code change policy",
    "inputs_schema": {"type": "object", "required": ["change_type"]},
    "rules": [
        {
            "name": "refactor_needs_exception",
            "when": 'inputs.change_type == "refactor"',
            "outcome": "requires_exception",
            "message": "refactors need a human",
        },
        {"name": "docs_are_fine", "when": 'inputs.change_type == "docs"', "outcome": "allow"},
    ],
    "exception_route_id": "route_eng",
}


def _policy(policy_id: str, agent: Agent | None = None) -> None:
    policy_authoring.policy_create(actor=SYSTEM, policy_id=policy_id, definition=CODE_POLICY)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id=policy_id)
    if agent is not None:
        policy_authoring.policy_grant(actor=SYSTEM, policy_id=policy_id, agent_id=agent.agent_id)


def _open(agent: Agent, mode: str = "propose", **fields: Any) -> str:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent),
        intent="code.refactor.execute",
        automation_mode=mode,
        metadata={"ticket": "T-1"},
        **fields,
    ).decision_id


@dataclass
class World:
    """One agent and what it works on; each mode gets its own copy of everything a call may change,
    so both runs start from the same state. ``values[mode]`` fills a request's ``{name}`` slots."""

    agent: Agent
    key: str
    values: dict[str, dict[str, str]]


@pytest.fixture
def world(make_agent: Callable[..., tuple[Agent, str]]) -> World:
    agent, key = make_agent("door-agent")
    other, _ = make_agent("other-agent")
    _policy("code_change_policy_v1", agent)
    _policy("ungranted_policy_v1")
    revoked_agent, revoked_key = make_agent("revoked-agent")
    agent_registry.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=revoked_agent))
    disabled_agent, disabled_key = make_agent("disabled-agent")
    agent_registry.agent_set_disabled(actor=SYSTEM, agent=disabled_agent, disabled=True)
    expired_agent, expired_key = make_agent("expired-agent")
    AgentKey.objects.filter(agent=expired_agent).update(expires_at=timezone.now() - timedelta(minutes=1))
    shared = {
        "key": key,
        "other": _open(other),
        "revoked_key": revoked_key,
        "disabled_key": disabled_key,
        "expired_key": expired_key,
        "unknown_key": "tmem_" + "Q" * 40,
    }
    values = {}
    for mode in MODES:
        closed = _open(agent, "autonomous")
        decision_services.decision_close(actor=Actor.for_agent(agent), decision_id=closed, action="commit")
        values[mode] = {**shared, "did": _open(agent), "closed": closed, "auto": _open(agent, "autonomous")}
    return World(agent, key, values)


# --- one request, both ways -------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """A request with ``{name}`` slots (World.values) in its path, query, body and header values.
    ``body``: bytes or text as is; anything else is sent as JSON."""

    method: str
    path: str
    body: Any = None
    auth: str | None = "Agent {key}"
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    query: str = ""
    scheme: str = "http"
    chunk: int = 0
    content_length: bool = True  # False: sent without one, as a chunked upload arrives

    def fill(self, values: dict[str, str]) -> tuple[bytes, list[tuple[str, str]], str, str]:
        def put(text: str) -> str:
            for name, value in values.items():
                text = text.replace("{" + name + "}", value)
            return text

        if self.body is None:
            raw = b""
        elif isinstance(self.body, bytes):
            raw = self.body
        elif isinstance(self.body, str):
            raw = put(self.body).encode()
        else:
            raw = put(json.dumps(self.body)).encode()
        headers = [(k, put(v)) for k, v in self.headers]
        if self.auth is not None:
            headers.append(("authorization", put(self.auth)))
        if self.content_type is not None and self.method not in ("GET", "HEAD"):
            headers.append(("content-type", self.content_type))
        return raw, headers, put(self.path), put(self.query)


@dataclass
class Run:
    mode: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    door_answers: list[Any]  # what each call of agent_door.answer returned
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    logs: list[LogLine]
    new_decisions: list[str]
    sent_request_id: str | None = None
    values: dict[str, str] = field(default_factory=dict)

    @property
    def door_answered(self) -> bool:
        return any(a is not None for a in self.door_answers)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


def _counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every count this process keeps (counters, and how many times each histogram observed)."""
    out = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, Counter | Histogram):
            continue
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith(("_total", "_count")):
                    out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
LogLine = tuple[str, str, str, str | None, tuple[str, ...]]


class _Lines(logging.Handler):
    """Warning log lines: logger, level, message, the request id bound while each was written, and
    the names of the record's extra fields (the JSON log format writes each of them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == "tracemem-wait-listener":
            return  # the process's one decision_wait listener (reconnecting after an outage), not the request
        extra = tuple(sorted(set(record.__dict__) - _RECORD_FIELDS))
        self.lines.append((record.name, record.levelname, record.getMessage(), current_request_id(), extra))


def send(
    settings: Any,
    world: World,
    mode: str,
    req: Req,
    values: dict[str, str] | None = None,
    *,
    database: bool = True,
) -> Run:
    """``req`` through the front with the door off (``django``) or on (``door``). ``database``: False
    while the database is down (the decisions it created are not looked up)."""
    values = values if values is not None else world.values[mode]
    settings.TRACEMEM_AGENT_DOOR = mode == "door"
    raw, headers, path, query = req.fill(values)
    real = agent_door.answer
    answers: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        answers.append(answer)
        return answer

    before = _counters()
    known = set(Decision.objects.values_list("decision_id", flat=True)) if database else set()
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    try:
        with mock.patch.object(agent_door, "answer", side_effect=spy):
            sent = through_front(
                req.method,
                path,
                raw,
                headers,
                query=query,
                scheme=req.scheme,
                chunk=req.chunk,
                content_length=req.content_length,
            )
            status, out_headers, content = sent.status, sent.headers, sent.body
    finally:
        logging.getLogger().removeHandler(lines)
    after = _counters()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    new = (
        list(
            Decision.objects.exclude(decision_id__in=known)
            .order_by("created_at")
            .values_list("decision_id", flat=True)
        )
        if database
        else []
    )
    sent_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
    return Run(mode, status, out_headers, content, answers, delta, lines.lines, new, sent_id, values)


# --- what must be equal -----------------------------------------------------------------------

# Values two calls necessarily differ in (hashes cover ids and clocks; an evaluation's trace event
# records its clock as "now").
VOLATILE = frozenset(
    {
        "decision_id",
        "event_id",
        "created_at",
        "closed_at",
        "timestamp",
        "trace_head",
        "hash",
        "prev_hash",
        "now",
    }
)
IGNORED_HEADERS = frozenset({"date", "content-length"})
ISO_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _volatile_strings(value: Any, found: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in VOLATILE and isinstance(item, str):
                found.append((key, item))
            else:
                _volatile_strings(item, found)
    elif isinstance(value, list):
        for item in value:
            _volatile_strings(item, found)


def _request_id_view(run: Run) -> str | None:
    value = run.header("x-request-id")
    if value is None or value == run.sent_request_id:
        return value  # absent, or the client's own id echoed: compared as it is
    return "<generated>" if re.fullmatch(r"[0-9a-f]{32}", value) else f"<unexpected {value!r}>"


def _fresh_cookie(name: str, value: str) -> str:
    """A cookie Django sets anew (a CSRF secret replacing a malformed one): its value and expiry are
    new each time."""
    if name != "set-cookie":
        return value
    value = re.sub(r"^([^=]+)=[^;]*", r"\1=<new>", value)
    return re.sub(r"expires=[^;]+", "expires=<date>", value)


def _normalise_text(run: Run, text: str, volatile: list[tuple[str, str]]) -> str:
    request_id = run.header("x-request-id")
    if request_id:
        text = text.replace(request_id, "<request_id>")
    for name, value in sorted(run.values.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, "{" + name + "}")
    numbered: dict[str, str] = {}
    for key, value in volatile:
        numbered.setdefault(value, f"<{key}:{len(numbered) + 1}>")
    for value, placeholder in numbered.items():
        text = text.replace(value, placeholder)
    return text


def view(run: Run, fuzz: Callable[[str], str] = lambda text: text) -> dict[str, Any]:
    """Everything about ``run`` the other mode must reproduce, values that must differ replaced."""
    volatile: list[tuple[str, str]] = []
    try:
        parsed = json.loads(run.body)
    except ValueError:
        parsed = None
    _volatile_strings(parsed, volatile)
    body = fuzz(_normalise_text(run, run.body.decode("utf-8", "backslashreplace"), volatile))
    headers = sorted(
        (
            k,
            "<request_id>"
            if k == "x-request-id"
            else fuzz(_normalise_text(run, _fresh_cookie(k, v), volatile)),
        )
        for k, v in run.headers
        if k not in IGNORED_HEADERS
    )
    length = run.header("content-length")
    return {
        "status": run.status,
        "content-length": "absent" if length is None else int(length) == len(run.body),
        "headers": headers,
        "x-request-id": _request_id_view(run),
        "body": body,
        "json": json.loads(body) if parsed is not None else None,
        "metrics": sorted((k, v) for k, v in run.metrics.items()),
        "logs": [
            (n, lvl, fuzz(_normalise_text(run, m, volatile)), rid == run.header("x-request-id"))
            for n, lvl, m, rid, _ in run.logs
        ],
    }


def _decision_view(decision_id: str, values: dict[str, str]) -> dict[str, Any]:
    """A decision and its trace as stored, ids and clocks left out (``values`` and the decision's own
    id replaced by their names in the events), and what checking its hash chain finds."""
    decision = Decision.objects.get(pk=decision_id)
    values = {"self": decision_id, **values}
    row = {
        k: v
        for k, v in vars(decision).items()
        if not k.startswith("_") and k not in ("decision_id", "created_at", "closed_at", "trace_head")
    }
    row["closed"] = decision.closed_at is not None
    events = []
    for event in TraceEvent.objects.filter(decision=decision).order_by("seq"):
        text = json.dumps(
            {"seq": event.seq, "type": event.type, "actor": event.actor, "payload": event.payload}
        )
        for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
            text = text.replace(value, "{" + name + "}")
        events.append(json.loads(ISO_INSTANT.sub("<instant>", text)))
    return {"row": row, "events": events, "problems": decision_problems(decision)}


def effects(run: Run) -> dict[str, Any]:
    """What ``run`` wrote: the decisions it created, and the state of those its mode owns."""
    mine = {name: run.values[name] for name in ("did", "closed", "auto") if name in run.values}
    return {
        "created": [_decision_view(d, run.values) for d in run.new_decisions],
        **{name: _decision_view(d, run.values) for name, d in mine.items()},
    }


def both(
    settings: Any,
    world: World,
    req: Req,
    *,
    door: bool | None = True,
    status: int | None = None,
    fuzz: Callable[[str], str] = lambda text: text,
    database: bool = True,
    before: Callable[[], None] = lambda: None,
) -> tuple[Run, Run]:
    """``req`` with the door off, then on: the two answers (and what they wrote) must be the same.

    ``door``: True, the door must have answered; False, it must not have (declined or not asked);
    None, either. ``status``: what Django answers (so the test cannot pass on two equal mistakes).
    ``before`` runs before each of the two (to start both from the same process state).
    """
    before()
    django = send(settings, world, "django", req, database=database)
    django_effects = effects(django) if database else {}
    before()
    on = send(settings, world, "door", req, database=database)
    assert django.door_answers == [], "the door is asked nothing while TRACEMEM_AGENT_DOOR is off"
    if status is not None:
        assert django.status == status, django.body
    assert view(on, fuzz) == view(django, fuzz)
    if database:
        assert effects(on) == django_effects
        for made in django_effects["created"]:
            assert made["problems"] == []
    if door is True:
        assert on.door_answered, f"the door declined {req}"
    elif door is False:
        assert not on.door_answered, f"the door answered {req}"
    return django, on


# --- the four REST operations, and how each can go wrong ----------------------------------------

CREATE = {"intent": "deploy.service.api", "automation_mode": "autonomous"}
DID = "/api/v1/decisions/{did}"


def _nested(depth: int) -> dict[str, Any]:
    """A decision_create body nested ``depth`` levels deep (the body itself is one)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 2):
        value = {"x": value}
    return {**CREATE, "metadata": value}


# (id, request, door must answer?, Django's status)
REST_CASES: list[tuple[str, Req, bool | None, int]] = [
    # decision_create
    ("create", Req("POST", "/api/v1/decisions", {**CREATE, "metadata": {"ticket": "T-9", "password": "hunter2"}}), True, 201),
    ("create-all-fields", Req("POST", "/api/v1/decisions", {**CREATE, "actor": "ci-bot", "instance": "eu-1", "version": "1.2"}), True, 201),
    ("create-bearer", Req("POST", "/api/v1/decisions", CREATE, auth="Bearer {key}"), True, 201),
    ("create-scheme-lowercase", Req("POST", "/api/v1/decisions", CREATE, auth="agent {key}"), True, 201),
    ("create-charset-utf8", Req("POST", "/api/v1/decisions", {**CREATE, "metadata": {"note": "café ☕"}}, content_type="application/json; charset=utf-8"), True, 201),
    ("create-charset-latin1", Req("POST", "/api/v1/decisions", b'{"intent": "deploy.service.api", "automation_mode": "autonomous", "metadata": {"note": "caf\xe9"}}', content_type="application/json; charset=latin-1"), False, 201),
    ("create-unicode-separators", Req("POST", "/api/v1/decisions", {**CREATE, "metadata": {"note": "a\u2028b\u2029c"}}), True, 201),
    ("create-integer-beyond-64-bits", Req("POST", "/api/v1/decisions", '{"intent": "deploy.service.api", "automation_mode": "autonomous", "metadata": {"n": 123456789012345678901234567890}}'), True, 400),
    ("create-duplicate-key", Req("POST", "/api/v1/decisions", '{"intent": "nope", "intent": "deploy.service.api", "automation_mode": "autonomous"}'), True, 201),
    ("create-cookies-but-no-session", Req("POST", "/api/v1/decisions", CREATE, headers=(("cookie", "theme=dark; csrftoken=" + "C" * 32),)), True, 201),
    ("create-malformed-csrf-cookie", Req("POST", "/api/v1/decisions", CREATE, headers=(("cookie", "csrftoken=abc"),)), False, 201),
    ("create-query-string-ignored", Req("POST", "/api/v1/decisions", CREATE, query="intent=x"), False, 201),
    ("create-bad-intent", Req("POST", "/api/v1/decisions", {**CREATE, "intent": "Deploy Service"}), True, 400),
    ("create-bad-mode", Req("POST", "/api/v1/decisions", {**CREATE, "automation_mode": "sometimes"}), True, 400),
    ("create-missing-intent", Req("POST", "/api/v1/decisions", {"automation_mode": "autonomous"}), True, 400),
    ("create-unknown-field", Req("POST", "/api/v1/decisions", {**CREATE, "colour": "red"}), True, 400),
    ("create-intent-not-a-string", Req("POST", "/api/v1/decisions", {**CREATE, "intent": 5}), True, 400),
    ("create-mode-null", Req("POST", "/api/v1/decisions", {**CREATE, "automation_mode": None}), True, 400),
    ("create-metadata-not-an-object", Req("POST", "/api/v1/decisions", {**CREATE, "metadata": ["a"]}), True, 400),
    ("create-body-an-array", Req("POST", "/api/v1/decisions", [CREATE]), True, 400),
    ("create-body-a-string", Req("POST", "/api/v1/decisions", '"deploy"'), True, 400),
    ("create-body-null", Req("POST", "/api/v1/decisions", "null"), True, 400),
    ("create-chunked-upload", Req("POST", "/api/v1/decisions", CREATE, content_length=False), False, 400),
    ("create-body-empty", Req("POST", "/api/v1/decisions", b""), False, 400),
    ("create-invalid-json", Req("POST", "/api/v1/decisions", '{"intent": '), True, 400),
    ("create-trailing-garbage", Req("POST", "/api/v1/decisions", json.dumps(CREATE) + " x"), True, 400),
    ("create-nan", Req("POST", "/api/v1/decisions", '{"intent": "deploy.service.api", "automation_mode": "autonomous", "metadata": {"n": NaN}}'), True, 400),
    ("create-byte-order-mark", Req("POST", "/api/v1/decisions", b"\xef\xbb\xbf" + json.dumps(CREATE).encode()), True, 400),
    ("create-invalid-utf8", Req("POST", "/api/v1/decisions", b'{"intent": "\xff", "automation_mode": "autonomous"}'), True, 400),
    ("create-too-deep", Req("POST", "/api/v1/decisions", _nested(65)), True, 400),
    ("create-text-plain", Req("POST", "/api/v1/decisions", CREATE, content_type="text/plain"), False, 415),
    ("create-no-content-type", Req("POST", "/api/v1/decisions", CREATE, content_type=None), False, 415),
    ("create-accept-html", Req("POST", "/api/v1/decisions", CREATE, headers=(("accept", "text/html"),)), False, 406),
    ("create-accept-indent", Req("POST", "/api/v1/decisions", CREATE, headers=(("accept", "application/json; indent=2"),)), False, 201),
    ("create-trailing-slash", Req("POST", "/api/v1/decisions/", CREATE), False, 404),
    ("create-put", Req("PUT", "/api/v1/decisions", CREATE), False, 405),
    # authentication (401 with WWW-Authenticate and details.reason)
    ("auth-missing", Req("POST", "/api/v1/decisions", CREATE, auth=None), False, 401),
    ("auth-other-scheme", Req("POST", "/api/v1/decisions", CREATE, auth="Basic {key}"), False, 401),
    ("auth-personal-token-scheme", Req("POST", "/api/v1/decisions", CREATE, auth="Token {key}"), False, 401),
    ("auth-three-words", Req("POST", "/api/v1/decisions", CREATE, auth="Agent {key} extra"), True, 401),
    ("auth-malformed-key", Req("POST", "/api/v1/decisions", CREATE, auth="Agent nope"), True, 401),
    ("auth-unknown-key", Req("POST", "/api/v1/decisions", CREATE, auth="Agent {unknown_key}"), True, 401),
    ("auth-revoked-key", Req("POST", "/api/v1/decisions", CREATE, auth="Agent {revoked_key}"), True, 401),
    ("auth-expired-key", Req("POST", "/api/v1/decisions", CREATE, auth="Agent {expired_key}"), True, 401),
    ("auth-disabled-agent", Req("POST", "/api/v1/decisions", CREATE, auth="Bearer {disabled_key}"), True, 401),
    ("auth-unknown-key-on-get", Req("GET", DID, auth="Agent {unknown_key}"), True, 401),
    ("auth-revoked-key-on-context", Req("POST", DID + "/context", {"context": {"a": 1}}, auth="Agent {revoked_key}"), True, 401),
    ("auth-unknown-key-and-invalid-json", Req("POST", "/api/v1/decisions", "{", auth="Agent {unknown_key}"), True, 401),
    ("auth-missing-on-evaluate", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}, auth=None), False, 401),
    # decision_get
    ("get", Req("GET", DID), True, 200),
    ("get-closed", Req("GET", "/api/v1/decisions/{closed}"), True, 200),
    ("get-bearer", Req("GET", DID, auth="Bearer {key}"), True, 200),
    ("get-another-agents", Req("GET", "/api/v1/decisions/{other}"), True, 404),
    ("get-unknown", Req("GET", "/api/v1/decisions/TMEM_0000000000000000000000"), True, 404),
    ("get-odd-id", Req("GET", "/api/v1/decisions/not an id ☃"), True, 404),
    ("get-query-unknown-field", Req("GET", DID, query="colour=red"), False, 400),
    ("get-query-id-twice", Req("GET", DID, query="decision_id={did}"), False, 400),
    ("get-query-empty-value", Req("GET", DID, query="colour="), False, 200),
    ("get-with-a-body", Req("GET", DID, {"decision_id": "x"}), True, 200),
    ("get-trailing-slash", Req("GET", DID + "/"), False, 404),
    ("get-head", Req("HEAD", DID), False, 200),
    ("get-options", Req("OPTIONS", DID), False, 200),
    # decision_add_context
    ("context", Req("POST", DID + "/context", {"context": {"step": "plan", "api_key": "sk-live-abcdefghijklmnop"}, "summary": "planned"}), True, 201),
    ("context-payload-alias", Req("POST", DID + "/context", {"payload": {"step": "plan"}}), True, 201),
    ("context-batch", Req("POST", DID + "/context", {"contexts": [{"a": 1}, {"b": {"c": [1, 2]}}]}), True, 201),
    ("context-batch-with-summary", Req("POST", DID + "/context", {"contexts": [{"a": 1}], "summary": "two"}), True, 400),
    ("context-on-auto", Req("POST", "/api/v1/decisions/{auto}/context", {"context": {"a": 1}}), True, 201),
    ("context-empty", Req("POST", DID + "/context", {"context": {}}), True, 400),
    ("context-missing", Req("POST", DID + "/context", {"summary": "nothing"}), True, 400),
    ("context-and-payload", Req("POST", DID + "/context", {"context": {"a": 1}, "payload": {"b": 2}}), True, 400),
    ("context-and-contexts", Req("POST", DID + "/context", {"context": {"a": 1}, "contexts": [{"b": 2}]}), True, 400),
    ("context-batch-empty", Req("POST", DID + "/context", {"contexts": []}), True, 400),
    ("context-batch-too-many", Req("POST", DID + "/context", {"contexts": [{"i": i} for i in range(101)]}), True, 400),
    ("context-batch-item-not-object", Req("POST", DID + "/context", {"contexts": [{"a": 1}, "b"]}), True, 400),
    ("context-not-an-object", Req("POST", DID + "/context", {"context": "plan"}), True, 400),
    ("context-id-in-path-and-body", Req("POST", DID + "/context", {"decision_id": "{did}", "context": {"a": 1}}), True, 400),
    ("context-unknown-field", Req("POST", DID + "/context", {"context": {"a": 1}, "colour": "red"}), True, 400),
    ("context-body-an-array", Req("POST", DID + "/context", [{"a": 1}]), True, 400),
    ("context-invalid-json", Req("POST", DID + "/context", "{"), True, 400),
    ("context-closed", Req("POST", "/api/v1/decisions/{closed}/context", {"context": {"a": 1}}), True, 409),
    ("context-another-agents", Req("POST", "/api/v1/decisions/{other}/context", {"context": {"a": 1}}), True, 404),
    ("context-unknown", Req("POST", "/api/v1/decisions/TMEM_0000000000000000000000/context", {"context": {"a": 1}}), True, 404),
    ("context-get", Req("GET", DID + "/context"), False, 405),
    # decision_evaluate
    ("evaluate-requires-exception", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "refactor"}}), True, 200),
    ("evaluate-allow", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}}), True, 200),
    ("evaluate-deny", Req("POST", DID + "/evaluate", {"policy": "code_change_policy_v1", "inputs": {"change_type": "schema"}}), True, 200),
    ("evaluate-inputs-fail-the-schema", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}), True, 400),
    ("evaluate-ungranted-policy", Req("POST", DID + "/evaluate", {"policy_id": "ungranted_policy_v1", "inputs": {"change_type": "docs"}}), True, 403),
    ("evaluate-unknown-policy", Req("POST", DID + "/evaluate", {"policy_id": "no_such_policy", "inputs": {"change_type": "docs"}}), True, 403),
    ("evaluate-no-policy", Req("POST", DID + "/evaluate", {"inputs": {"change_type": "docs"}}), True, 400),
    ("evaluate-inputs-and-ref", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}, "inputs_ref": "EVT_x"}), True, 400),
    ("evaluate-unknown-inputs-ref", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs_ref": "EVT_nope"}), True, 400),
    ("evaluate-inputs-not-an-object", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": ["docs"]}), True, 400),
    ("evaluate-policy-id-not-a-string", Req("POST", DID + "/evaluate", {"policy_id": 7, "inputs": {"change_type": "docs"}}), True, 400),
    ("evaluate-closed", Req("POST", "/api/v1/decisions/{closed}/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}}), True, 409),
    ("evaluate-another-agents", Req("POST", "/api/v1/decisions/{other}/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}}), True, 404),
    ("evaluate-unknown", Req("POST", "/api/v1/decisions/TMEM_0000000000000000000000/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}), True, 404),
    # decision_trace (its query string: after_seq and limit), after the calls above wrote its events
    ("context-line-separators", Req("POST", DID + "/context", {"context": {"note": "a\u2028b\u2029c", "n": 1e-7, "big": 2.0**64}}), True, 201),
    ("trace", Req("GET", DID + "/trace"), True, 200),
    ("trace-limit", Req("GET", DID + "/trace", query="limit=2"), True, 200),
    ("trace-a-page", Req("GET", DID + "/trace", query="after_seq=2&limit=3"), True, 200),
    ("trace-the-last-page", Req("GET", DID + "/trace", query="limit=1000&after_seq=3"), True, 200),
    ("trace-past-the-end", Req("GET", DID + "/trace", query="after_seq=500"), True, 200),
    ("trace-empty-values", Req("GET", DID + "/trace", query="after_seq=&limit="), True, 200),
    ("trace-repeated-key", Req("GET", DID + "/trace", query="limit=1&limit=2"), True, 200),
    ("trace-percent-encoded", Req("GET", DID + "/trace", query="li%6Dit=%32"), True, 200),
    ("trace-limit-with-plus", Req("GET", DID + "/trace", query="limit=+2"), True, 200),  # " 2"
    ("trace-limit-zero", Req("GET", DID + "/trace", query="limit=0"), True, 400),
    ("trace-limit-too-big", Req("GET", DID + "/trace", query="limit=1001"), True, 400),
    ("trace-limit-not-a-number", Req("GET", DID + "/trace", query="limit=ten"), True, 400),
    ("trace-limit-fraction", Req("GET", DID + "/trace", query="limit=1.5"), True, 400),
    ("trace-after-seq-negative", Req("GET", DID + "/trace", query="after_seq=-1"), True, 400),
    ("trace-after-seq-huge", Req("GET", DID + "/trace", query="after_seq=" + "9" * 30), True, 400),
    ("trace-unknown-field", Req("GET", DID + "/trace", query="colour=red"), True, 400),
    ("trace-id-in-query", Req("GET", DID + "/trace", query="decision_id={did}"), True, 400),
    ("trace-no-value", Req("GET", DID + "/trace", query="limit"), True, 200),
    ("trace-many-fields", Req("GET", DID + "/trace", query="a=1&b=2&c=3&d=4&limit=2"), False, 400),
    ("trace-closed", Req("GET", "/api/v1/decisions/{closed}/trace", query="limit=10"), True, 200),
    ("trace-bearer", Req("GET", DID + "/trace", auth="Bearer {key}"), True, 200),
    ("trace-another-agents", Req("GET", "/api/v1/decisions/{other}/trace", query="limit=10"), True, 404),
    ("trace-unknown", Req("GET", "/api/v1/decisions/TMEM_0000000000000000000000/trace"), True, 404),
    ("trace-odd-id", Req("GET", "/api/v1/decisions/not an id ☃/trace", query="limit=1"), True, 404),
    ("trace-unknown-key", Req("GET", DID + "/trace", query="limit=1", auth="Agent {unknown_key}"), True, 401),
    ("trace-no-key", Req("GET", DID + "/trace", query="limit=1", auth=None), False, 401),
    ("trace-personal-token-scheme", Req("GET", DID + "/trace", query="limit=1", auth="Token {key}"), False, 401),
    ("trace-accept-indent", Req("GET", DID + "/trace", query="limit=2", headers=(("accept", "application/json; indent=2"),)), False, 200),
    ("trace-head", Req("HEAD", DID + "/trace", query="limit=2"), False, 200),
    ("trace-post", Req("POST", DID + "/trace", {"limit": 2}), False, 405),
    # the request id: a client's valid one is echoed, an invalid one replaced
    ("request-id-echoed", Req("POST", DID + "/context", {"context": {"a": 1}}, headers=(("x-request-id", "trace-1234.abc:DEF_9"),)), True, 201),
    ("request-id-echoed-on-error", Req("GET", "/api/v1/decisions/{other}", headers=(("x-request-id", "client-id-42"),)), True, 404),
    ("request-id-invalid-replaced", Req("GET", DID, headers=(("x-request-id", "has spaces!"),)), True, 200),
    ("request-id-too-long-replaced", Req("GET", DID, headers=(("x-request-id", "a" * 129),)), True, 200),
]  # fmt: skip


def test_rest_calls_get_what_django_answers(settings: Any, world: World, subtests: Any) -> None:
    """Every case in one world (a database flush costs more than all the calls): the decisions each
    mode works on receive the same calls in the same order, so they stay alike."""
    for case_id, req, door, status in REST_CASES:
        with subtests.test(case_id):
            django, _ = both(settings, world, req, door=door, status=status)
            if status == 401:
                assert django.header("www-authenticate") == 'Agent realm="tracemem"'
            sent = django.sent_request_id
            if sent and re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", sent):
                assert django.header("x-request-id") == sent


def test_limits_on_the_body_are_applied_alike(settings: Any, world: World, subtests: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    big = {**CREATE, "metadata": {"blob": "x" * 3000}}
    fits = {**CREATE, "metadata": {"blob": "x" * 1900}}
    assert len(json.dumps(fits)) <= 2000
    with subtests.test("over the upload limit, sent whole"):
        # The front holds it whole and the door answers: its parser refuses it as DRF's does.
        both(settings, world, Req("POST", "/api/v1/decisions", big), door=True, status=413)
    with subtests.test("over the upload limit, sent in pieces"):
        # The front streams it to Django without asking the door.
        both(settings, world, Req("POST", "/api/v1/decisions", big, chunk=1000), door=False, status=413)
    with subtests.test("just under the upload limit"):
        both(settings, world, Req("POST", "/api/v1/decisions", fits), door=True, status=201)
    settings.TRACEMEM_MAX_JSON_DEPTH = 4  # read on each request
    with subtests.test("at the depth limit"):
        both(settings, world, Req("POST", "/api/v1/decisions", _nested(4)), status=201)
    with subtests.test("over the depth limit"):
        django, _ = both(settings, world, Req("POST", "/api/v1/decisions", _nested(5)), status=400)
        assert django.json()["error"]["details"] == {"max_depth": 4}


def test_what_the_door_writes_is_what_django_writes(settings: Any, world: World) -> None:
    """The same calls, each way, leave the same decision and trace, the hash chain valid."""
    opened = {**CREATE, "automation_mode": "propose", "metadata": {"token": "ghp_" + "a1" * 18}}
    calls = [
        Req("POST", "/api/v1/decisions/{new}/context", {"context": {"plan": "refactor", "password": "pw"}}),
        Req("POST", "/api/v1/decisions/{new}/context", {"contexts": [{"i": 1}, {"i": 2}]}),
        Req("POST", "/api/v1/decisions/{new}/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "refactor"}}),
        Req("POST", "/api/v1/decisions/{new}/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}),
        Req("GET", "/api/v1/decisions/{new}"),
    ]  # fmt: skip
    traces = {}
    for mode in MODES:
        made = send(settings, world, mode, Req("POST", "/api/v1/decisions", opened))
        assert made.status == 201 and made.door_answered == (mode == "door")
        values = {**world.values[mode], "new": made.json()["decision_id"]}
        statuses = []
        for req in calls:
            run = send(settings, world, mode, req, values)
            assert run.door_answered == (mode == "door")
            statuses.append(run.status)
        assert statuses == [201, 201, 200, 400, 200]
        traces[mode] = _decision_view(values["new"], values)
        types = [e["type"] for e in traces[mode]["events"]]
        assert types == ["created", "context", "context", "context", "evaluate", "evaluate"]
        assert traces[mode]["problems"] == []
    assert traces["door"] == traces["django"]


def test_the_first_call_with_a_fresh_key_notes_its_use_alike(
    settings: Any, world: World, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    """A key's last use is written on its first call, whichever door answers it."""
    runs = {}
    for mode in MODES:
        agent, key = make_agent(f"fresh-{mode}")
        values = {**world.values[mode], "key": key, "did": _open(agent), "agent": agent.agent_id}
        assert AgentKey.objects.get(agent=agent).last_used_at is None
        runs[mode] = send(settings, world, mode, Req("GET", DID), values)
        assert AgentKey.objects.get(agent=agent).last_used_at is not None, mode
    assert runs["door"].door_answered
    assert view(runs["door"]) == view(runs["django"])


def test_a_call_from_a_browser_session_still_waiting_for_its_second_factor_is_refused_alike(
    settings: Any, world: World
) -> None:
    """The two-factor gate (tracemem_site/second_factor.py) stops every request of a session whose
    person has not given their code yet, agent key or not."""
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123"))
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    req = Req("POST", "/api/v1/decisions", CREATE, headers=(("cookie", cookie),))
    django, _ = both(settings, world, req, door=False, status=403)
    assert django.json()["error"]["details"] == {"reason": "second_factor_required"}


def test_a_refusals_log_line_carries_the_same_fields(settings: Any, world: World, subtests: Any) -> None:
    """Django's "Bad Request: /path" line (django.utils.log.log_response) carries ``status_code`` and
    ``request`` as extra fields, which the JSON log format writes out (``"request": "<WSGIRequest:
    POST '/api/v1/decisions'>"``) and error reporters read."""
    for req in (
        Req("POST", "/api/v1/decisions", {**CREATE, "intent": "Nope"}),
        Req("GET", "/api/v1/decisions/{other}"),
        Req("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "decision_get", "arguments": {"decision_id": "{did}"}}}, auth="Bearer {unknown_key}"),
    ):  # fmt: skip
        with subtests.test(f"{req.method} {req.path}"):
            django, on = both(settings, world, req)
            fields = {run.mode: [(name, extra) for name, _, _, _, extra in run.logs] for run in (django, on)}
            assert fields["django"] == [("django.request", ("request", "request_id", "status_code"))]
            assert fields["door"] == fields["django"]


# --- what operators see: metrics, the rate limit, security headers, hosts, an outage -------------

COUNTED = [
    ("create", Req("POST", "/api/v1/decisions", CREATE), "decision-create", "201"),
    ("get", Req("GET", DID), "decision-get", "200"),
    ("context", Req("POST", DID + "/context", {"context": {"a": 1}}), "decision-context", "201"),
    ("evaluate", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}}), "decision-evaluate", "200"),
    ("refused", Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}), "decision-evaluate", "400"),
    ("not-found", Req("GET", "/api/v1/decisions/{other}"), "decision-get", "404"),
    ("unauthenticated", Req("POST", "/api/v1/decisions", CREATE, auth="Agent {unknown_key}"), "decision-create", "401"),
    ("trace", Req("GET", DID + "/trace", query="limit=1000"), "decision-trace", "200"),
    ("trace-refused", Req("GET", DID + "/trace", query="limit=0"), "decision-trace", "400"),
]  # fmt: skip


def test_each_call_is_counted_once_by_door_operation_and_status(
    settings: Any, world: World, subtests: Any
) -> None:
    for case_id, req, label, status in COUNTED:
        with subtests.test(case_id):
            django, on = both(settings, world, req, status=int(status))  # all counts compared
            labels = (("door", "rest"), ("operation", label), ("status", status))
            for run in (django, on):
                assert run.metrics[("tracemem_requests_total", labels)] == 1
                assert run.metrics[("tracemem_request_duration_seconds_count", labels[:2])] == 1


def _inside_a_fresh_window(seconds: int) -> None:
    """Rate windows are fixed and turn with the wall clock: start well inside one, so that a test's
    calls fall into the same window and Retry-After is far from its end (tests/client/test_calls.py)."""
    remaining = seconds - time.time() % seconds
    if remaining < 30:
        time.sleep(remaining + 0.05)


def _retry_after_fuzz(django: Run, on: Run) -> Callable[[str], str]:
    """The two 429s were answered a moment apart, so their Retry-After may differ by a second."""
    waits = {int(run.header("retry-after") or 0) for run in (django, on)}
    assert max(waits) - min(waits) <= 1 and min(waits) >= 1, waits

    def fuzz(text: str) -> str:
        text = re.sub(r"retry after \d+ seconds", "retry after <n> seconds", text)
        text = re.sub(r'"retry_after":\d+', '"retry_after":"<n>"', text)
        return re.sub(r"^\d+$", "<n>", text)

    return fuzz


def test_the_rate_limit_is_refused_alike_and_shared_with_django(
    settings: Any, world: World, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "3/hour"
    _inside_a_fresh_window(3600)
    calls = [
        Req("GET", DID),
        Req("POST", DID + "/context", {"context": {"a": 1}}),
        Req("POST", "/api/v1/decisions", CREATE),
        Req("POST", DID + "/evaluate", {"policy_id": "code_change_policy_v1", "inputs": {}}),
        Req("GET", DID + "/trace", query="limit=10"),
    ]
    runs: dict[str, list[Run]] = {}
    for mode in MODES:
        agent, key = make_agent(f"limited-{mode}")
        values = {**world.values[mode], "key": key, "did": _open(agent), "agent": agent.agent_id}
        runs[mode] = [send(settings, world, mode, req, values) for req in calls]
    for mode, sequence in runs.items():
        assert [r.status for r in sequence] == [200, 201, 201, 429, 429], mode
        assert all(r.door_answered == (mode == "door") for r in sequence), mode
    for django, on in zip(runs["django"], runs["door"], strict=True):
        fuzz = _retry_after_fuzz(django, on) if django.status == 429 else (lambda text: text)
        assert view(on, fuzz) == view(django, fuzz)
    refused = runs["django"][3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["retry_after"] == int(refused.header("retry-after") or 0)
    assert runs["door"][3].metrics[("tracemem_rate_limited_total", (("door", "rest"),))] == 1

    # One budget per agent, whichever door answers: two calls through Django, then the door's.
    agent, key = make_agent("shared")
    values = {**world.values["door"], "key": key, "did": _open(agent)}
    modes = ("django", "django", "door", "door")
    assert [send(settings, world, mode, Req("GET", DID), values).status for mode in modes] == [
        200,
        200,
        200,
        429,
    ]


SECURE_CALLS = [
    Req("POST", "/api/v1/decisions", CREATE),
    Req("GET", DID),
    Req("POST", DID + "/context", {"context": {}}),
    Req("POST", DID + "/evaluate", {"policy_id": "ungranted_policy_v1", "inputs": {}}),
    Req("GET", DID, auth="Agent {revoked_key}"),
]
# how the request arrives → (ASGI scheme, X-Forwarded-Proto sent, SECURE_PROXY_SSL_HEADER set, secure)
ARRIVALS = {
    "behind a TLS proxy": ("http", "https", True, True),
    "over TLS": ("https", None, True, True),
    "over TLS, the proxy says http": ("https", "http", True, False),  # the proxy's word wins
    "plain, X-Forwarded-Proto not trusted": ("http", "https", False, False),
}


def test_security_headers_are_the_same_on_every_answer(
    settings: Any, world: World, reload_middleware: Callable[[], None], subtests: Any
) -> None:
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    reload_middleware()
    for arrival, (scheme, forwarded, trusted, secure) in ARRIVALS.items():
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if trusted else None
        headers = (("x-forwarded-proto", forwarded),) if forwarded else ()
        for req in SECURE_CALLS:
            req = Req(req.method, req.path, req.body, auth=req.auth, headers=headers, scheme=scheme)
            with subtests.test(f"{arrival}: {req.method} {req.path}"):
                django, _ = both(settings, world, req)
                hsts = django.header("strict-transport-security")
                assert hsts == ("max-age=31536000; includeSubDomains; preload" if secure else None)
                assert django.header("x-content-type-options") == "nosniff"
                assert django.header("content-security-policy")


def test_a_plain_http_call_is_redirected_by_django_when_ssl_is_required(
    settings: Any, world: World, reload_middleware: Callable[[], None], subtests: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    reload_middleware()
    for req, status in ((Req("POST", "/api/v1/decisions", CREATE), 201), (Req("GET", DID), 200)):
        with subtests.test(f"plain {req.method} {req.path}"):
            django, _ = both(settings, world, req, door=False, status=301)
            assert django.header("location") == "https://testserver" + req.fill(world.values["django"])[2]
        with subtests.test(f"secure {req.method} {req.path}"):
            secure = Req(req.method, req.path, req.body, headers=(("x-forwarded-proto", "https"),))
            both(settings, world, secure, door=True, status=status)


# Host header → whether ALLOWED_HOSTS (["testserver"]) lets it through
HOSTS = {
    "evil.example": False,
    "testserver:8443": True,
    "TESTSERVER": True,
    "testserver.": True,
    "": False,
    "testserver, evil.example": False,
    "testserver:notaport": False,
}


def test_the_host_is_checked_as_django_checks_it(settings: Any, world: World, subtests: Any) -> None:
    for host, allowed in HOSTS.items():
        for req, status in (
            (Req("GET", DID, headers=(("host", host),)), 200),
            (Req("POST", DID + "/context", {"context": {"a": 1}}, headers=(("host", host),)), 201),
        ):
            with subtests.test(f"{req.method} with Host {host!r}"):
                both(
                    settings,
                    world,
                    req,
                    door=allowed,
                    status=status if allowed else 400,
                )
    settings.ALLOWED_HOSTS = ["api.example"]  # read per request by both (the door's memory of it too)
    with subtests.test("a Host no longer allowed"):
        both(settings, world, Req("GET", DID), door=False, status=400)
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.USE_X_FORWARDED_HOST = True
    for forwarded, status in (("evil.example", 400), ("testserver", 200)):
        with subtests.test(f"X-Forwarded-Host {forwarded!r}"):
            req = Req("GET", DID, headers=(("x-forwarded-host", forwarded),))
            both(settings, world, req, door=False, status=status)


def test_a_database_outage_is_503_unavailable_alike_and_both_recover(
    settings: Any, world: World, subtests: Any
) -> None:
    calls = [
        Req("GET", DID),
        Req("GET", DID + "/trace", query="limit=5"),
        Req("POST", "/api/v1/decisions", CREATE),
        Req("POST", DID + "/context", {"context": {"a": 1}}),
        Req(
            "POST",
            DID + "/evaluate",
            {"policy_id": "code_change_policy_v1", "inputs": {"change_type": "docs"}},
        ),
    ]
    # Each mode has used the key already, so this process remembers it (agents/keycache.py).
    for mode in MODES:
        assert send(settings, world, mode, Req("GET", DID)).status == 200
    outage = DatabaseOutage()
    try:
        outage.begin()
        for req in calls:
            with subtests.test(f"{req.method} {req.path}"):
                django, _ = both(settings, world, req, status=503, database=False)
                error = django.json()["error"]
                assert error["code"] == "unavailable" and error["details"]["applied"] is False
                assert int(django.header("retry-after") or 0) == error["details"]["retry_after"]
        with subtests.test("a key this process does not remember"):
            # Checked in the database, which is down (a fresh worker, or one that forgot the key).
            both(settings, world, Req("GET", DID), status=503, database=False, before=keycache.forget_local)
        with subtests.test("a call carrying a session cookie"):
            # Django loads the session (SecondFactorMiddleware) before the view: that fails first.
            req = Req("GET", DID, headers=(("cookie", "sessionid=abcdefghijklmnopqrstuvwxyz012345"),))
            both(settings, world, req, door=False, status=503, database=False)
    finally:
        outage.end()
    # The pool thread gets a working connection back by itself (here the door answers first).
    for mode in reversed(MODES):
        again = send(settings, world, mode, Req("GET", DID))
        assert (again.status, again.door_answered) == (200, mode == "door"), again.body

    # The connection cut after the call committed, while its answer is put together: 503 again, but
    # saying the call was applied (tracemem_core/outage.py tracks each request's commits).
    original = decisions_api.created_out

    def cut_then_render(decision: Decision) -> dict[str, Any]:
        terminate_backend(connection.connection.info.backend_pid)
        Decision.objects.filter(pk=decision.pk).exists()  # reading anything back now fails
        return original(decision)

    with (
        subtests.test("cut after the commit"),
        mock.patch.object(decisions_api, "created_out", cut_then_render),
    ):
        django, _ = both(settings, world, Req("POST", "/api/v1/decisions", CREATE), status=503)
        assert django.json()["error"]["details"]["applied"] is True


def test_with_the_cache_down_the_calls_are_answered_alike(settings: Any, world: World, subtests: Any) -> None:
    """The rate limit and the remembered keys live in the shared cache (Redis); while it is down both
    fall back to this process (tests/core/test_cache_outage.py). Each mode starts believing it up."""
    server = RedisServer().start()
    use_cache(settings, server.url)
    try:
        server.stop()
        for req, status in (
            (Req("POST", "/api/v1/decisions", CREATE), 201),
            (Req("GET", DID), 200),
            (Req("POST", DID + "/context", {"context": {"a": 1}}), 201),
            (Req("GET", DID, auth="Agent {revoked_key}"), 401),
        ):
            with subtests.test(f"{req.method} {req.path}"):
                django, _ = both(settings, world, req, status=status, before=shared_cache.reset)
                assert any(name == "tracemem_cache_errors_total" for name, _ in django.metrics)
    finally:
        server.stop()
        shared_cache.reset()


def _revoke_in_another_process(secret: str, how: str, redis_url: str) -> None:
    """Revoke a key from a process of its own (a shell next to the web workers), as an operator
    would: through the service, or by saving the row (what the Django admin site and a shell's
    ``save()`` do; agents/apps.py). ``redis_url`` empty: that process runs without Redis."""
    import subprocess
    import sys

    from tests.fault_helpers import ROOT, process_env

    prefix = AgentKey.objects.get(key_hash=keys.digest(secret)).prefix
    revoke = (
        "registry.agent_key_revoke(actor=Actor.system('shell'), key=key)"
        if how == "service"
        else "key.revoked_at = timezone.now()\nkey.save()"
    )
    code = (
        "from django.utils import timezone\n"
        "from agents.models import AgentKey\n"
        "from agents.services import registry\n"
        "from tracemem_core.actor import Actor\n"
        f"key = AgentKey.objects.get(prefix={prefix!r})\n{revoke}\n"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=process_env(redis_url, REDIS_URL=redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    ("revoker", "redis"),
    [
        ("this process", True),
        ("another process, service", True),
        ("another process, save", True),
        ("another process, save", False),  # no REDIS_URL: LocMemCache, one per process
    ],
)
def test_a_used_key_is_refused_on_the_next_call_after_its_revocation(
    settings: Any, make_agent: Callable[..., tuple[Agent, str]], revoker: str, redis: bool
) -> None:
    """Through the agent door (scripts/serve.sh's fast path), REST and MCP: a key that was used, so
    this process remembers it when the cache is shared (agents/keycache.py), is refused on the very
    next call once revoked, whether this process revoked it or another one did (all they share is
    the database, and Redis if there is one)."""
    redis_url = os.environ.get("REDIS_URL", "") if redis else ""
    if not redis:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    agent, secret = make_agent("revoked-later")
    world = World(agent, secret, {"door": {"key": secret, "did": _open(agent)}})
    rest = Req("GET", DID)
    mcp = _mcp(_tool("decision_get", {"decision_id": "{did}"}))
    for req in (rest, mcp, rest):
        used = send(settings, world, "door", req)
        assert (used.status, used.door_answered) == (200, True), used.body
    # Remembered (no database check on the next call) only when every process shares the cache.
    assert (keycache.recall(keys.digest(secret)) is not None) is redis
    if revoker == "this process":
        agent_registry.agent_key_revoke(actor=SYSTEM, key=AgentKey.objects.get(agent=agent))
    else:
        _revoke_in_another_process(secret, revoker.rpartition(" ")[2], redis_url)
    for req in (rest, mcp):
        refused = send(settings, world, "door", req)
        assert (refused.status, refused.door_answered) == (401, True), refused.body
        assert refused.json()["error"]["details"]["reason"] == "revoked"


# --- the MCP door's hot tools (POST /mcp, JSON-RPC tools/call) ----------------------------------


def _tool(name: str, arguments: Any, request_id: Any = 7, **extra: Any) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments} if arguments is not None else {"name": name}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params, **extra}


def _mcp(
    message: Any,
    *,
    auth: str | None = "Bearer {key}",
    accept: str | None = "application/json, text/event-stream",
    headers: tuple[tuple[str, str], ...] = (),
) -> Req:
    extra = headers + ((("accept", accept),) if accept is not None else ())
    return Req("POST", "/mcp", message, auth=auth, headers=extra)


EVALUATE = {
    "decision_id": "{did}",
    "policy_id": "code_change_policy_v1",
    "inputs": {"change_type": "refactor"},
}

# (id, request, door must answer?, Django's HTTP status)
MCP_CASES: list[tuple[str, Req, bool | None, int]] = [
    ("create", _mcp(_tool("decision_create", {**CREATE, "metadata": {"password": "hunter2"}})), True, 200),
    ("create-agent-scheme", _mcp(_tool("decision_create", CREATE), auth="Agent {key}"), True, 200),
    ("create-string-id", _mcp(_tool("decision_create", CREATE, request_id="req-1")), True, 200),
    ("create-no-accept", _mcp(_tool("decision_create", CREATE), accept=None), True, 200),
    ("create-bad-intent", _mcp(_tool("decision_create", {**CREATE, "intent": "Nope"})), True, 200),
    ("create-unknown-argument", _mcp(_tool("decision_create", {**CREATE, "colour": "red"})), True, 200),
    ("create-wrong-type", _mcp(_tool("decision_create", {**CREATE, "metadata": "x"})), True, 200),
    ("create-no-arguments", _mcp(_tool("decision_create", None)), True, 200),
    ("create-too-deep", _mcp(_tool("decision_create", _nested(70))), False, 400),
    ("get", _mcp(_tool("decision_get", {"decision_id": "{did}"})), True, 200),
    ("get-another-agents", _mcp(_tool("decision_get", {"decision_id": "{other}"})), True, 200),
    ("get-unknown", _mcp(_tool("decision_get", {"decision_id": "TMEM_0000000000000000000000"})), True, 200),
    ("get-missing-id", _mcp(_tool("decision_get", {})), True, 200),
    ("context", _mcp(_tool("decision_add_context", {"decision_id": "{did}", "context": {"step": "plan"}, "summary": "s"})), True, 200),
    ("context-batch", _mcp(_tool("decision_add_context", {"decision_id": "{did}", "contexts": [{"a": 1}, {"b": 2}]})), True, 200),
    ("context-closed", _mcp(_tool("decision_add_context", {"decision_id": "{closed}", "context": {"a": 1}})), True, 200),
    ("context-empty", _mcp(_tool("decision_add_context", {"decision_id": "{did}", "context": {}})), True, 200),
    ("evaluate", _mcp(_tool("decision_evaluate", EVALUATE)), True, 200),
    ("evaluate-deny", _mcp(_tool("decision_evaluate", {**EVALUATE, "inputs": {"change_type": "schema"}})), True, 200),
    ("evaluate-inputs-fail-the-schema", _mcp(_tool("decision_evaluate", {**EVALUATE, "inputs": {}})), True, 200),
    ("evaluate-ungranted", _mcp(_tool("decision_evaluate", {**EVALUATE, "policy_id": "ungranted_policy_v1"})), True, 200),
    ("evaluate-closed", _mcp(_tool("decision_evaluate", {**EVALUATE, "decision_id": "{closed}"})), True, 200),
    ("auth-unknown-key", _mcp(_tool("decision_get", {"decision_id": "{did}"}), auth="Bearer {unknown_key}"), True, 401),
    ("auth-revoked-key", _mcp(_tool("decision_create", CREATE), auth="Bearer {revoked_key}"), True, 401),
    ("auth-missing", _mcp(_tool("decision_create", CREATE), auth=None), False, 401),
    ("request-id-echoed", _mcp(_tool("decision_get", {"decision_id": "{did}"}), headers=(("x-request-id", "mcp-req-1"),)), True, 200),
    ("origin-cross-site", _mcp(_tool("decision_get", {"decision_id": "{did}"}), headers=(("origin", "https://evil.example"),)), False, 403),
    ("other-tool", _mcp(_tool("capabilities_get", {})), False, 200),
    ("unknown-tool", _mcp(_tool("no_such_tool", {})), False, 200),
    ("tools-list", _mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), False, 200),
    ("notification", _mcp({"jsonrpc": "2.0", "method": "notifications/initialized"}), False, 202),
    ("batch", _mcp([_tool("decision_get", {"decision_id": "TMEM_0000000000000000000000"})]), False, 400),
    ("invalid-json", _mcp("{"), False, 400),
    ("unsupported-protocol-version", _mcp(_tool("decision_get", {"decision_id": "{did}"}), headers=(("mcp-protocol-version", "1999-01-01"),)), False, 400),
    # The params the door reads without pydantic (a name and an object of arguments) and those it
    # has CallToolRequestParams validate (docs/performance.md §25).
    ("params-meta", _mcp({**_tool("decision_get", {"decision_id": "{did}"}), "params": {"name": "decision_get", "arguments": {"decision_id": "{did}"}, "_meta": {"progressToken": 3}}}), True, 200),
    ("arguments-null", _mcp({**_tool("decision_get", None), "params": {"name": "decision_get", "arguments": None}}), True, 200),
    ("arguments-not-an-object", _mcp(_tool("decision_get", ["x"])), False, 200),
    ("name-not-a-string", _mcp({**_tool("decision_get", None), "params": {"name": ["decision_get"], "arguments": {}}}), False, 200),
]  # fmt: skip


def test_mcp_tool_calls_get_what_django_answers(settings: Any, world: World, subtests: Any) -> None:
    for case_id, req, door, status in MCP_CASES:
        with subtests.test(case_id):
            both(settings, world, req, door=door, status=status)


# Audit (issue 17): more odd trace queries the door answers, each answered as Django answers it.
ODD_TRACE_QUERIES: list[tuple[str, str, int]] = [
    ("nul-value", "limit=%00", 400),
    ("nul-name", "%00=1", 400),
    ("invalid-utf8", "limit=%FF", 400),
    ("non-ascii-encoded", "limit=%C3%A9", 400),
    ("encoded-ampersand", "limit=2%26after_seq%3D1", 400),
    ("semicolon", "limit=2;after_seq=1", 400),
    ("bare-equals", "=", 200),
    ("ampersands-only", "&&&", 200),
    ("empty-name", "=5&limit=2", 400),
    ("plus-name", "li+mit=2", 400),
    ("space-padded", "limit=%202%20", 200),
    ("unicode-digits", "limit=%D9%A3", 400),
    ("underscores", "limit=1_0", 400),
    ("exponent", "limit=1e1", 400),
    ("leading-zeros", "limit=0002&after_seq=0000", 200),
    ("long-value", "limit=" + "9" * 5000, 400),
    ("long-name", "x" * 5000 + "=1", 400),
    ("true", "limit=true", 400),
]


def test_odd_trace_queries_get_what_django_answers(settings: Any, world: World, subtests: Any) -> None:
    for case_id, query, status in ODD_TRACE_QUERIES:
        with subtests.test(case_id):
            both(settings, world, Req("GET", DID + "/trace", query=query), door=True, status=status)


# Audit (issue 17): tools/call params the door reads without pydantic, against the stock path.
ODD_MCP_CALLS: list[tuple[str, Req, int]] = [
    ("argument-named-parsed", _mcp(_tool("decision_get", {"decision_id": "{did}", "parsed": {"decision_id": "x"}})), 200),
    ("only-parsed", _mcp(_tool("decision_get", {"parsed": "{\"decision_id\": \"{did}\"}"})), 200),
    ("duplicated-name", _mcp('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"decision_create","name":"decision_get","arguments":{"decision_id":"{did}"}}}'), 200),
    ("duplicated-argument", _mcp('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"decision_get","arguments":{"decision_id":"x","decision_id":"{did}"}}}'), 200),
    ("huge-id", _mcp(_tool("decision_get", {"decision_id": "{did}"}, request_id=2**70)), 200),
    ("float-id", _mcp(_tool("decision_get", {"decision_id": "TMEM_0000000000000000000000"}, request_id=1.0)), 202),
    ("negative-id", _mcp(_tool("decision_get", {"decision_id": "{did}"}, request_id=-5)), 200),
    ("params-a-list", _mcp({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ["decision_get"]}), 400),
    ("meta-not-an-object", _mcp({**_tool("decision_get", None), "params": {"name": "decision_get", "arguments": {"decision_id": "TMEM_0000000000000000000000"}, "_meta": 5}}), 200),
    ("extra-param", _mcp({**_tool("decision_get", None), "params": {"name": "decision_get", "arguments": {"decision_id": "{did}"}, "task": {}}}), 200),
    ("empty-arguments", _mcp(_tool("decision_get", {})), 200),
    ("huge-number-argument", _mcp(_tool("decision_add_context", {"decision_id": "{did}", "context": {"n": 10**400}})), 200),
    ("evaluate-number-policy", _mcp(_tool("decision_evaluate", {**EVALUATE, "policy_id": 5})), 200),
    ("nul-in-argument", _mcp(_tool("decision_get", {"decision_id": "TMEM_\u0000"})), 200),
]  # fmt: skip


def test_odd_mcp_calls_get_what_django_answers(settings: Any, world: World, subtests: Any) -> None:
    for case_id, req, status in ODD_MCP_CALLS:
        with subtests.test(case_id):
            both(settings, world, req, door=None, status=status)
