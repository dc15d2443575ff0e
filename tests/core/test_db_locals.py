"""Django's connection look-ups and "not from async code" checks without exceptions
(tracemem_core/db_locals.py, issue 17, docs/performance.md section 30): the same answers as Django's
own code, in a thread, in another thread and inside a running event loop; none of asgiref's or
Django's ``RuntimeError`` per request; and a failure as soon as either library changes the code
these stand in for."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import sys
import threading
from typing import Any

import pytest
from asgiref import local as asgiref_local
from django.core.cache import cache
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionHandler
from django.utils import asyncio as django_asyncio
from django.utils import connection as django_connection

from tests.front_helpers import own_pool, through_front
from tracemem_core import db_locals
from tracemem_core.postgresql import base as pg_base
from tracemem_site import agent_door


def test_installed_on_the_pinned_versions() -> None:
    assert db_locals.versions() == db_locals.PINNED
    assert ConnectionHandler.__getitem__ is db_locals._getitem
    assert ConnectionHandler.all is db_locals._all
    assert django_connection.ConnectionProxy.__getattribute__ is db_locals._proxy_getattribute


def _digest(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


# The code db_locals stands in for, as the pinned versions have it. A new version of asgiref or
# Django that changes any of it fails here: read the change, adapt db_locals, then update these.
STOOD_IN_FOR = {
    "asgiref.local._ThreadCriticalLocal": (asgiref_local._ThreadCriticalLocal, "620d0c88bdbf289a"),
    "django.utils.connection.ConnectionProxy": (django_connection.ConnectionProxy, "54108258cb61f18f"),
    "django.utils.connection.BaseConnectionHandler": (
        django_connection.BaseConnectionHandler,
        "08140750326d3169",
    ),
    "django.db.utils.ConnectionHandler": (ConnectionHandler, "a65c7fcf9a80c8d5"),
    "django.utils.asyncio.async_unsafe": (django_asyncio.async_unsafe, "1536319765bc947b"),
}


@pytest.mark.parametrize("name", sorted(STOOD_IN_FOR))
def test_the_library_code_stood_in_for_is_unchanged(name: str) -> None:
    obj, digest = STOOD_IN_FOR[name]
    assert _digest(obj) == digest, f"{name} changed: review tracemem_core/db_locals.py"


def test_a_thread_gets_its_own_connection_as_with_django() -> None:
    mine = connections["default"]
    assert connections["default"] is mine is db_locals._django_getitem(connections, "default")
    assert connection.alias == "default" and connection.settings_dict is mine.settings_dict
    theirs: list[Any] = []

    def other() -> None:
        theirs.append(connections["default"])
        theirs.append(db_locals._django_getitem(connections, "default"))
        theirs.append(connections.all(initialized_only=True))
        connections["default"].close()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert theirs[0] is theirs[1] and theirs[0] is not mine
    assert theirs[2] == [theirs[0]]
    assert connections.all(initialized_only=True) == db_locals._django_all(connections, True)
    assert connections.all() == db_locals._django_all(connections)


def test_inside_a_running_event_loop_the_answers_are_djangos() -> None:
    async def inside() -> tuple[Any, Any, Any]:
        return (
            connections["default"],
            db_locals._django_getitem(connections, "default"),
            connections.all(initialized_only=True),
        )

    found, djangos, initialized = asyncio.run(inside())
    assert found is djangos and found is not connections["default"]
    assert initialized == [found]


@pytest.mark.django_db
def test_inside_a_running_event_loop_the_database_still_refuses_with_djangos_message(
    monkeypatch: Any,
) -> None:
    async def cursor() -> Any:
        return connection.cursor()

    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    with pytest.raises(SynchronousOnlyOperation) as refused:
        asyncio.run(cursor())
    assert str(refused.value) == db_locals.DEFAULT_MESSAGE
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    asyncio.run(cursor()).close()


def test_each_rewrapped_method_keeps_djangos_function_and_message() -> None:
    rewrapped = 0
    for name in dir(pg_base.DatabaseWrapper):
        method = getattr(pg_base.DatabaseWrapper, name)
        if getattr(method, "__code__", None) is not db_locals.async_unsafe(len, "").__code__:
            assert db_locals.unwrapped(method) is None, name  # none of Django's left behind
            continue
        rewrapped += 1
        cells = dict(zip(method.__code__.co_freevars, method.__closure__, strict=True))
        originals = [
            db_locals.unwrapped(vars(k)[name]) for k in pg_base.DatabaseWrapper.__mro__[1:] if name in vars(k)
        ]
        func, message = cells["func"].cell_contents, cells["message"].cell_contents
        assert func.__name__ == name and message == db_locals.DEFAULT_MESSAGE, name
        if func.__module__ != pg_base.__name__:  # Django's own function, as Django wrapped it
            assert (func, message) == originals[0], name
    assert rewrapped >= 10  # ensure_connection, cursor, commit, connect, prepared_cursor, ...


def test_the_proxies_answer_as_before() -> None:
    assert connection.vendor == connections["default"].vendor
    assert "default" != connection and connection == connections["default"]
    previous = connection.force_debug_cursor
    connection.force_debug_cursor = not previous
    try:
        assert connections["default"].force_debug_cursor is (not previous)
    finally:
        connection.force_debug_cursor = previous
    with pytest.raises(AttributeError) as missing:
        connection.no_such_attribute  # noqa: B018
    with pytest.raises(AttributeError) as djangos:
        connections["default"].no_such_attribute  # noqa: B018
    assert str(missing.value) == str(djangos.value)
    assert getattr(connection, "no_such_attribute", 7) == 7
    assert type(connection) is django_connection.ConnectionProxy and connection._alias == "default"
    assert cache.get("db-locals-missing", "x") == "x"


@pytest.mark.django_db(transaction=True)
def test_a_door_request_raises_no_exception_to_find_its_connection(
    make_agent: Any, monkeypatch: Any, settings: Any
) -> None:
    """asgiref's Local and Django's async_unsafe raised and caught a RuntimeError on each look-up:
    18 per decision_create through the door, once its thread had its connection."""
    settings.ALLOWED_HOSTS = ["testserver"]
    # As in production: Django's test case replaces ensure_connection (to refuse databases a test
    # did not ask for), and then the wrapper leaves every call to it.
    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", pg_base._DJANGO_ENSURE_CONNECTION)
    _, key = make_agent()
    raised: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "exception" and arg[0] is RuntimeError:
            raised.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_back.f_code.co_name}")
        return tracer

    real_answer = agent_door.answer

    def traced(*args: Any) -> Any:
        sys.settrace(tracer)
        try:
            return real_answer(*args)
        finally:
            sys.settrace(None)

    headers = [("authorization", f"Agent {key}"), ("content-type", "application/json")]
    body = json.dumps({"intent": "db.locals.check", "automation_mode": "autonomous"}).encode()
    with own_pool(monkeypatch):
        # The pool thread's first request opens its connection (Django's code, as always).
        assert through_front("POST", "/api/v1/decisions", body, headers).status == 201
        monkeypatch.setattr(agent_door, "answer", traced)
        created = through_front("POST", "/api/v1/decisions", body, headers)
        assert created.status == 201, created.body
        did = json.loads(created.body)["decision_id"]
        context = json.dumps({"context": {"n": 1}}).encode()
        appended = through_front("POST", f"/api/v1/decisions/{did}/context", context, headers)
        assert appended.status == 201, appended.body
    assert raised == []
