"""Shared fixtures. Tests run on real PostgreSQL (and real Redis where they need it).

Under CI (``CI=true``) a missing service fails the run; it never turns into a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client
from django.test.testcases import TransactionTestCase

from agents.models import Agent
from agents.services import registry as agent_registry
from tracemem_core import dbroles, waits
from tracemem_core.actor import Actor

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The tests' receivers (webhooks, Slack, SMTP, the external data source) listen on loopback, which
# production refuses unless TRACEMEM_OUTBOUND_ALLOW lists it (docs/security.md §9): the suite
# allows loopback like the embedded default does, here and in the processes it starts.
TEST_OUTBOUND_ALLOW = "127.0.0.0/8,::1"
os.environ.setdefault("TRACEMEM_OUTBOUND_ALLOW", TEST_OUTBOUND_ALLOW)
settings.TRACEMEM_OUTBOUND_ALLOW = [item.strip() for item in os.environ["TRACEMEM_OUTBOUND_ALLOW"].split(",")]


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
    if engine != "tracemem_core.postgresql":
        raise pytest.UsageError(
            "the test suite runs on PostgreSQL: set DATABASE_URL (make test does) — got " + engine
        )


# --- The database roles the suite runs as (docs/security.md) -----------------------------------
#
# The test database is created and migrated as the owner (MIGRATION_DATABASE_URL, which defaults to
# DATABASE_URL), ``db_roles`` creates an app role and a products role for it, and from then on every
# connection the code under test opens (the test client, live servers, worker subprocesses) logs in
# as the app role, exactly as in production. Roles are cluster-wide: their names derive from the test
# database's name, which is already unique per concurrent run.
_DEFAULT_DB: dict[str, Any] = settings.DATABASES["default"]
OWNER_USER: str = _DEFAULT_DB["USER"]


def role_names() -> tuple[str, str]:
    """(app role, products role) of this test database."""
    name = _DEFAULT_DB["NAME"]
    return f"{name}_app", f"{name}_products"


def _connect_default_as(user: str) -> None:
    connections.close_all()
    _DEFAULT_DB["USER"] = user
    _DEFAULT_DB["PASSWORD"] = settings.MIGRATION_DATABASE["PASSWORD"] if user == OWNER_USER else ""


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    app_role, products_role = role_names()
    with django_db_blocker.unblock():
        call_command("db_roles", app_user=app_role, products_user=products_role, verbosity=0)
    _connect_default_as(app_role)
    settings.TRACEMEM_PRODUCTS_ROLE = os.environ["TRACEMEM_PRODUCTS_ROLE"] = products_role
    os.environ.pop("MIGRATION_DATABASE_URL", None)  # subprocesses get the app role's DATABASE_URL only
    # Remembered agent keys are kept only while the process hears the database's credentials
    # notifications (agents/keycache.py): listen from the start, as a web process does after its first
    # request, so a test's first request is remembered.
    waits.hub().wait_until_listening(10)
    yield
    waits.hub().stop(join=10)  # decision_wait's listening connection must not keep the database open
    for barrier in _barrier:
        barrier.close()
    _connect_default_as(OWNER_USER)  # pytest-django drops the test database as the owner


def owner_dsn() -> str:
    """The test database, logged in as the owner (a PostgreSQL superuser here)."""
    owner = settings.MIGRATION_DATABASE
    return psycopg.conninfo.make_conninfo(
        host=owner["HOST"] or None,
        port=owner["PORT"] or None,
        user=owner["USER"],
        password=owner["PASSWORD"] or None,
        dbname=_DEFAULT_DB["NAME"],
    )


def owner_sql(*statements: str, params: Any = None, triggers: bool = True) -> list[Any]:
    """Run SQL as the owner (business tables for built-in products, say), in one committed
    transaction; returns the rows of the last statement, if any. ``triggers=False`` is what an
    operator holding the owner or the PostgreSQL superuser can do behind TraceMem's back: switch
    the protected tables' triggers off (DDL: ``session_replication_role`` does not skip them)."""
    with psycopg.connect(owner_dsn()) as conn, conn.cursor() as cursor:
        # Foreign keys checked at each statement, not at commit: a check still pending when the
        # triggers are switched back on would make that ALTER TABLE fail.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with triggers_off(cursor, *([] if triggers else TAMPERABLE_TABLES)):
            rows: list[Any] = []
            for statement in statements:
                cursor.execute(statement, params)
                rows = cursor.fetchall() if cursor.description else []
        return rows


TAMPERABLE_TABLES = ("decisions_decision", *dbroles.APPEND_ONLY_TABLES)


def superuser_sql(*statements: str, params: Any = None) -> list[Any]:
    """SQL as the PostgreSQL superuser with the protected tables' triggers off, committed."""
    return owner_sql(*statements, params=params, triggers=False)


@contextmanager
def as_products_role() -> Iterator[Any]:
    """A cursor on the test's own connection (inside its open transaction) acting as the products
    role, with the business schema first on the search path: what a built-in product sees."""
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{role_names()[1]}"; SET search_path = {settings.TRACEMEM_DATA_SCHEMA}')
        try:
            yield cursor
        finally:
            cursor.execute("RESET ROLE; RESET search_path")


def psql_as_app(sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL with ``psql`` logged in as the app role, as an attacker holding its credentials would."""
    app_role, _ = role_names()
    return subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            _DEFAULT_DB["HOST"] or "127.0.0.1",
            "-p",
            str(_DEFAULT_DB["PORT"] or 5432),
            "-U",
            app_role,
            "-d",
            _DEFAULT_DB["NAME"],
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGPASSWORD": ""},
    )


@contextmanager
def triggers_off(cursor: Any, *tables: str) -> Iterator[None]:
    """Switch off every trigger of ``tables`` as their owner, and back on as they were (ENABLE
    ALWAYS included) — the DDL an operator holding the owner or the superuser would run. Inside
    one transaction nobody else ever sees them off."""
    if not tables:
        yield
        return
    cursor.execute(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND c.relname = ANY(%s)",
        [list(tables)],
    )
    enabled = cursor.fetchall()
    for table, trigger, _ in enabled:
        cursor.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER "{trigger}"')
    try:
        yield
    finally:
        mode = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}
        for table, trigger, how in enabled:
            cursor.execute(f'ALTER TABLE "{table}" {mode[how]} TRIGGER "{trigger}"')


# TransactionTestCase empties every table with TRUNCATE. The app role may not, and the append-only
# tables' triggers refuse it to everyone, so teardown is the one place that logs in as the owner
# and switches those triggers off for the flush.
_original_teardown = TransactionTestCase._fixture_teardown


def _teardown_as_owner(self: TransactionTestCase) -> None:
    _connect_default_as(OWNER_USER)
    try:
        with connection.cursor() as cursor, triggers_off(cursor, *dbroles.APPEND_ONLY_TABLES):
            _original_teardown(self)
    finally:
        _connect_default_as(role_names()[0])


TransactionTestCase._fixture_teardown = _teardown_as_owner  # type: ignore[method-assign]


_barrier: list[Any] = []


def notifications_delivered(timeout: float = 10.0) -> None:
    """Return once this process's listener has handled every notification committed so far (an
    earlier test's, or this one's committed credentials change, which makes this process forget its
    keys, agents/keycache.py): PostgreSQL delivers notifications in commit order, so once a marker
    sent now arrives, all sent before it have. Nothing to wait for when nothing listens."""
    import uuid

    hub = waits.hub()
    if not hub.listening():
        return
    key = f"barrier-{uuid.uuid4().hex}"
    with hub.subscribe(key) as subscription:
        for attempt in (1, 2):  # a test may have cut the connection (pg_terminate_backend)
            try:
                if not _barrier or _barrier[0].closed:
                    _barrier[:] = [_barrier_connection()]
                _barrier[0].execute("SELECT pg_notify(%s, %s)", [waits.CHANNEL, key])
                break
            except Exception:
                for barrier in _barrier:
                    barrier.close()
                _barrier.clear()
                if attempt == 2:  # the database gone (a test stopped it): nothing to wait for
                    return
        heard = subscription.wait(timeout)
        # Not heard while the listener went down: it forgets on reconnecting, which is all we wanted.
        assert heard or not hub.listening(), "the listener did not hear a notification in time"


def _barrier_connection() -> Any:
    import psycopg
    from django.db import connections

    params = dict(connections["default"].get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("prepare_threshold", None)
    params["application_name"] = "tracemem-tests-barrier"
    return psycopg.connect(autocommit=True, **params)


@pytest.fixture(autouse=True)
def no_credentials_change_left_in_flight() -> Iterator[None]:
    """A test's transaction is rolled back, so a credentials change made in it never reaches its
    step 2 (agents/keycache.py): its "changing" marker would keep the next tests from remembering
    any key for keycache.CHANGE_SECONDS. Each test leaves none behind, as a committed change would.
    An earlier test's committed change notifies this process: handled before this test starts."""
    notifications_delivered()
    yield
    from django.core.cache import cache

    from agents import keycache

    keycache.forget_local()
    if keycache.shared():
        try:
            cache.delete_many([keycache.GENERATION_KEY, keycache.CHANGING_KEY])
        except Exception:  # a test that left Redis down: the next one finds out
            pass


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
        agent = agent_registry.agent_create(
            actor=Actor.system(), name=name or f"agent-{counter['n']}", owner=owner
        )
        issued = agent_registry.agent_key_issue(actor=Actor.system(), agent=agent)
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
