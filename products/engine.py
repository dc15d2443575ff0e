"""SQL execution for data products: parameterised statements only, identifiers only from the
product definition, a statement timeout, one transaction per call.

Identifiers are quoted with ``psycopg.sql.Identifier`` on PostgreSQL and with the backend's own
``quote_name`` on the embedded SQLite default; every value travels as a parameter. Database
errors are mapped to domain errors whose messages never carry the database's text (it names
tables and columns, which agents must not see).

The built-in source is walled off from TraceMem's own tables (docs/security.md): a built-in
product's table must be a business table (:func:`builtin_table_refusal`; on PostgreSQL one of
schema ``TRACEMEM_DATA_SCHEMA``, where an unqualified name is looked up), and on PostgreSQL its
statements run as ``TRACEMEM_PRODUCTS_ROLE`` (``SET LOCAL ROLE`` inside the product's transaction),
which has privileges on that schema only, so the database refuses anything else as well.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from psycopg import sql
from psycopg.types.string import TextLoader

from products import dsn as dsn_rules
from products.models import DataSource, SourceKind
from tracemem_core import crypto
from tracemem_core.env import env_int
from tracemem_core.errors import Conflict, DomainError, InvalidArgument, InvalidState

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = env_int("TRACEMEM_PRODUCT_STATEMENT_TIMEOUT_MS", 5000)
CONNECT_TIMEOUT_S = env_int("TRACEMEM_PRODUCT_CONNECT_TIMEOUT_S", 5)


@dataclass
class Result:
    rows: list[tuple[Any, ...]]
    rowcount: int


# Names no built-in product may use, besides every installed model's table.
_OWN_TABLE_PREFIXES = ("auth_", "django_", "sqlite_", "pg_")


def _tracemem_tables() -> set[str]:
    return {model._meta.db_table for model in apps.get_models(include_auto_created=True)}


def builtin_table_refusal(table: str) -> str | None:
    """Why the built-in source may not serve ``table`` ("table" or "schema.table"), or None.

    Built-in products reach business data only: never Django's or TraceMem's own tables. Checked
    when a product is defined, when it is published and before every run.
    """
    schema, _, name = table.rpartition(".")
    data_schema = settings.TRACEMEM_DATA_SCHEMA
    if connection.vendor == "postgresql":
        if schema and schema != data_schema:
            return (
                f"built-in products reach only tables of schema {data_schema}, and {table} is outside it; "
                f"move the table to {data_schema} or define an external data source for it"
            )
    elif schema:
        return "on the embedded SQLite database a built-in product names its table without a schema"
    if name in _tracemem_tables() or name.startswith(_OWN_TABLE_PREFIXES):
        return f"{name} is one of TraceMem's own tables; built-in products reach business tables only"
    return None


class Runner:
    """One open transaction on a data source; ``execute`` runs one parameterised statement."""

    def __init__(self, cursor: Any, vendor: str, raw_connection: Any, schema: str | None = None) -> None:
        self._cursor = cursor
        self.vendor = vendor
        self._raw = raw_connection
        self._schema = schema  # where an unqualified table name is looked up (the built-in source)
        self._as_products_role = False

    def ident(self, dotted: str) -> str:
        parts = dotted.split(".")
        if self.vendor == "postgresql":
            return sql.Identifier(*parts).as_string(self._raw)
        return ".".join(connection.ops.quote_name(p) for p in parts)

    def table(self, dotted: str) -> str:
        if self._schema and "." not in dotted:
            dotted = f"{self._schema}.{dotted}"
        return self.ident(dotted)

    def begin(self) -> None:
        """Statement timeout, and on the built-in source the products role: one round trip."""
        setup = f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}"
        role = settings.TRACEMEM_PRODUCTS_ROLE
        if self._schema is not None and role:
            setup += f"; SET LOCAL ROLE {self.ident(role)}"
            self._as_products_role = True
        self._cursor.execute(setup)

    def finish(self) -> None:
        """Back to TraceMem's own role, before the trace event is written in the same transaction."""
        if self._as_products_role:
            self._cursor.execute("SET LOCAL ROLE NONE")
            self._as_products_role = False

    def execute(self, statement: str, params: Sequence[Any]) -> Result:
        self._cursor.execute(statement, list(params))
        rows = self._cursor.fetchall() if self._cursor.description else []
        return Result(rows=[tuple(r) for r in rows], rowcount=self._cursor.rowcount)


def _map_error(exc: BaseException) -> DomainError:
    # The driver's message names tables, columns and values: log the class only, tell the agent
    # what kind of problem it was and what to do.
    # Django wraps the driver's exception; the driver's class is the precise one.
    cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    logger.warning("data product statement failed: %s", type(cause).__name__)
    if isinstance(exc, IntegrityError | psycopg.errors.IntegrityError):
        return Conflict(
            "the write violates a constraint of the product's data (duplicate key, missing reference or a "
            "required value); read the current data and adjust the mutation"
        )
    if isinstance(cause, psycopg.errors.QueryCanceled):
        return InvalidState(
            "the data source did not answer within the statement timeout; narrow the query or retry later"
        )
    if isinstance(cause, psycopg.errors.DataError) or type(exc).__name__ == "DataError":
        return InvalidArgument(
            "a value does not fit the product's data (too long or out of range); check the field types with product_get"
        )
    return InvalidState("the data source refused the statement; an admin should check the product definition")


def _checked_destination(source: DataSource, dsn: str) -> dict[str, Any]:
    """The DSN under today's outbound rules, resolved once: ``hostaddr`` for psycopg, or a refusal.

    A DSN saved before the rules existed may break them; it is refused here, never used. The agent
    is told what to do; which address or rule is in the server log (an agent must not map the
    network through error messages)."""
    try:
        return dsn_rules.connect_kwargs(dsn)
    except InvalidArgument as exc:
        if exc.details.get("rule") in ("never_allowed", "not_allowed"):
            logger.warning("data source %s not contacted: %s", source.source_id, exc.message)
            raise InvalidState(
                f"data source {source.source_id} was not contacted: its host is not an allowed destination "
                "(the server log says which rule); ask an admin to check the data source and "
                "TRACEMEM_OUTBOUND_ALLOW"
            ) from None
        raise InvalidState(
            f"data source {source.source_id} was not contacted: its DSN is no longer allowed ({exc.message}); "
            "an admin must save its DSN again"
        ) from None
    except OSError:
        logger.warning("data source %s unreachable: its host does not resolve", source.source_id)
        raise InvalidState(
            f"data source {source.source_id} is unreachable; retry later or ask an admin to check it"
        ) from None


@contextmanager
def open_runner(source: DataSource) -> Iterator[Runner]:
    """A transaction on ``source``: committed when the block ends, rolled back on any error.

    The built-in source runs inside the caller's Django transaction (a savepoint), so the data change
    and its trace event commit or roll back together; on PostgreSQL its statements run as the
    products role until :meth:`Runner.finish` (called when the block ends, or earlier by a caller
    that writes TraceMem's own tables inside the block). A refused statement rolls the savepoint
    back, and the role with it. An external source has its own connection and transaction,
    committed when the block ends.
    """
    if source.kind == SourceKind.BUILTIN:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    connection.ensure_connection()
                    if connection.vendor == "postgresql":
                        runner = Runner(
                            cursor,
                            connection.vendor,
                            connection.connection,
                            schema=settings.TRACEMEM_DATA_SCHEMA,
                        )
                        runner.begin()  # SET LOCAL: ends with the surrounding transaction at the latest
                    else:
                        runner = Runner(cursor, connection.vendor, connection.connection)
                    yield runner
                    runner.finish()
        except DomainError:
            raise
        except DatabaseError as exc:
            raise _map_error(exc) from None
        return
    dsn = crypto.decrypt(source.dsn_encrypted, what=f"the DSN of data source {source.name!r}")
    destination = _checked_destination(source, dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **destination) as conn:
            # json/jsonb arrive as text, as on Django's own connection, and are parsed with the
            # nesting limit by products.fields.render (psycopg's loader would recurse without one).
            for type_name in ("json", "jsonb"):
                conn.adapters.register_loader(type_name, TextLoader)
            with conn.transaction():
                with conn.cursor() as cursor:
                    runner = Runner(cursor, "postgresql", conn)
                    runner.begin()
                    yield runner
    except DomainError:
        raise
    except psycopg.Error as exc:
        if type(exc) is psycopg.OperationalError:  # connecting failed (subclasses are statement errors)
            logger.warning("data source %s unreachable", source.source_id)
            raise InvalidState(
                f"data source {source.source_id} is unreachable; retry later or ask an admin to check it"
            ) from None
        raise _map_error(exc) from None
