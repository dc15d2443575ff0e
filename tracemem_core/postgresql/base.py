"""Django's PostgreSQL backend with a connection check that costs no round trip, and prepared
statements for our own hot statements (issue 17, docs/performance.md sections 15 and 19).

The connection check.

``CONN_HEALTH_CHECKS`` makes Django check a reused connection before a request's first query, so a
connection the server ended while it sat idle between requests — a restart, an administrator's
``pg_terminate_backend``, an idle-session timeout — is replaced instead of failing the request.
Django checks with a ``SELECT 1``: one round trip on every request (docs/performance.md). A server
that ends a session first writes an error to it and closes the socket, and an idle connection of
ours is sent nothing otherwise (these connections never LISTEN), so the check here looks at the
socket instead: anything to read, or a connection psycopg already knows is closed or broken, and it
is not usable (Django then opens a new one). A peer that vanished without a word (a cut network)
is not detected by either check, nor is a session ended in the instant between the check and the
query (with ``SELECT 1`` as well: between it and the next statement); the request then fails as a
database outage that says nothing was applied (tracemem_core/outage.py), and the connection is
discarded after it.

Prepared statements. Django binds parameters on the client (psycopg's ``ClientCursor``): every
execution writes the parameters into the SQL text in Python, and PostgreSQL parses and plans the
text again. The ORM stays so (Django warns that server-side binding breaks some ORM queries);
:meth:`DatabaseWrapper.prepared_cursor` is for our own plain statements on the hot path only, a
fixed text each (an agent's decision read and locked, the decision's and one event's insert, a
trace page, an evaluation's grant and version). It is a server-side-binding psycopg cursor that
prepares each statement (a named prepared statement of the session) the first time the connection
runs it and executes it by name after that, wrapped in Django's ``CursorWrapper`` like any cursor:
execute wrappers, error wrapping, ``connection.queries`` and transactions behave as before. psycopg
prepares only when the connection's ``prepare_threshold`` is set (``OPTIONS``; settings set it
unless ``TRACEMEM_DB_PREPARE=0`` or connections are not kept); without it this is the ordinary
cursor.

psycopg forgets (and deallocates) a session's prepared statements on every rollback and after DDL
it runs itself. A column type changed by another session (a migration while old workers run) makes
PostgreSQL refuse the old statement on every execution ("cached plan must not change result type"):
:class:`PreparedCursor` then drops them all and runs it again when no transaction is open; inside
one the transaction is lost anyway, and its rollback drops them.
"""

from __future__ import annotations

import os
import select
from asyncio import _get_running_loop
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql import base, operations
from django.db.backends.utils import CursorWrapper
from django.utils.asyncio import async_unsafe
from psycopg import errors, pq
from psycopg._preparing import Key, Prepare, PrepareManager
from psycopg._queries import PostgresClientQuery, PostgresQuery

from tracemem_core import db_locals, telemetry

_ServerBindingCursor: Any = base.ServerBindingCursor
_register_tzloader: Any = base.register_tzloader  # type: ignore[attr-defined]


class PreparedCursor(_ServerBindingCursor):
    """Django's server-side-binding psycopg cursor, every statement prepared."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Any:
        try:
            return super().execute(query, params, prepare=True, binary=binary)
        # "cached plan must not change result type" (a migration changed a table), or a statement the
        # server no longer has (a pooler's reset query, PgBouncer before 1.22 in transaction mode).
        except (errors.FeatureNotSupported, errors.InvalidSqlStatementName):
            raw = self.connection
            if raw.info.transaction_status != pq.TransactionStatus.IDLE:
                raise
            raw._prepared.clear()  # what psycopg itself does on a rollback (pinned psycopg; tested)
            raw.wait(raw._prepared.maintain_gen(raw))  # DEALLOCATE ALL
            return super().execute(query, params, prepare=True, binary=binary)


_CLIENT_BOUND: Key = (b"", ())  # the key of every client-bound statement: never stored


class _PrepareManager(PrepareManager):
    """psycopg's record of a connection's statements, without the client-bound ones' texts.

    psycopg counts every statement a connection runs, by its text, towards preparing it, keeping the
    last ``prepared_max`` (100) texts. A client-bound statement (Django's ``ClientCursor``, all the
    ORM's) is never prepared, yet counted too, and its text has the parameters written in: each one is
    new, and each was kept — a batch of 100 context events is a 41 KB text, so every pool thread's
    connection held up to 4 MiB of recent batches (and their agents' contexts) that nothing would read
    again: the web workers' memory crept up round after round until every thread's connection had its
    hundred (docs/performance.md). Those statements are still checked, as psycopg checks a new one,
    for a ROLLBACK or DDL that drops the session's prepared statements; now every time, not only the
    first time psycopg sees a text."""

    def maybe_add_to_cache(self, query: PostgresQuery, prep: Prepare, name: bytes) -> Key | None:
        if isinstance(query, PostgresClientQuery):
            return _CLIENT_BOUND if self.prepare_threshold is not None else None
        return super().maybe_add_to_cache(query, prep, name)

    def validate(self, key: Key, prep: Prepare, name: bytes, results: Any) -> None:
        if key is _CLIENT_BOUND:
            self._should_discard(prep, results)
            return
        super().validate(key, prep, name, results)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> Any:
        # Server-side bound: logged with its parameters written in, as the ORM's statements are.
        if isinstance(cursor, PreparedCursor):
            try:
                return self.compose_sql(sql, params)
            except errors.DataError:
                return None
        return super().last_executed_query(cursor, sql, params)


_DJANGO_ENSURE_CONNECTION = BaseDatabaseWrapper.ensure_connection


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def ensure_connection(self) -> None:
        # Called before every statement and transaction step. Django's body does nothing once
        # connected; its async_unsafe check raised and caught a RuntimeError each time
        # (tracemem_core/db_locals.py). Django's own runs to connect, and whenever something replaced
        # it (pytest-django's blocker of database access in tests that did not ask for it).
        if self.connection is None or BaseDatabaseWrapper.ensure_connection is not _DJANGO_ENSURE_CONNECTION:
            return super().ensure_connection()
        if _get_running_loop() is not None and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
            raise SynchronousOnlyOperation(db_locals.DEFAULT_MESSAGE)
        return None

    @async_unsafe
    def get_new_connection(self, conn_params: Any) -> Any:
        raw = super().get_new_connection(conn_params)
        if type(raw._prepared) is PrepareManager:  # a pooled connection has ours already
            manager = _PrepareManager()
            manager.__dict__.update(raw._prepared.__dict__)  # the threshold, anything already counted
            raw._prepared = manager
        return raw

    @async_unsafe
    def prepared_cursor(self) -> CursorWrapper:
        """A cursor for one of our own fixed plain statements: server-side bound and prepared, or,
        when the connection does not prepare, the ordinary cursor (see the module's docstring)."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        wrap = self._prepare_cursor  # type: ignore[attr-defined]  # Django's, as its cursor() uses it
        with self.wrap_database_errors:
            raw: Any = self.connection
            if raw.prepare_threshold is None:
                return wrap(self.create_cursor())
            cursor = telemetry.traced_cursor_class(raw, PreparedCursor)(raw)
            # As Django's create_cursor: the connection's time zone, if it differs from the template's.
            tzloader = raw.adapters.get_loader(base.TIMESTAMPTZ_OID, pq.Format.TEXT)
            if self.timezone != tzloader.timezone:
                _register_tzloader(self.timezone, cursor)
            return wrap(cursor)

    def is_usable(self) -> bool:
        raw: Any = self.connection
        if raw is None or raw.closed or raw.broken:
            return False
        if raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()  # inside a transaction (never between requests): ask the server
        # poll(), not select(): a busy server (hundreds of parked waits and keep-alive sockets) has
        # descriptors above select()'s limit of 1024.
        poller = select.poll()
        try:
            poller.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False


# Django's async_unsafe checks of the connection's other methods (cursor, commit, connect, ...)
# without raising and catching a RuntimeError each (tracemem_core/db_locals.py).
db_locals.without_raising(DatabaseWrapper)
