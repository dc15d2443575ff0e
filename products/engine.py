"""SQL execution for data products: parameterised statements only, identifiers only from the
product definition, a statement timeout, one transaction per call.

Identifiers are quoted with ``psycopg.sql.Identifier`` on PostgreSQL and with the backend's own
``quote_name`` on the embedded SQLite default; every value travels as a parameter. Database
errors are mapped to domain errors whose messages never carry the database's text (it names
tables and columns, which agents must not see).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DatabaseError, IntegrityError, connection, transaction
from psycopg import sql

from products import dsn as dsn_rules
from products.models import DataSource, SourceKind
from tracemem_site import crypto
from tracemem_site.env import env_int
from tracemem_site.errors import Conflict, DomainError, InvalidArgument, InvalidState

logger = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = env_int("TRACEMEM_PRODUCT_STATEMENT_TIMEOUT_MS", 5000)
CONNECT_TIMEOUT_S = env_int("TRACEMEM_PRODUCT_CONNECT_TIMEOUT_S", 5)


@dataclass
class Result:
    rows: list[tuple[Any, ...]]
    rowcount: int


class Runner:
    """One open transaction on a data source; ``execute`` runs one parameterised statement."""

    def __init__(self, cursor: Any, vendor: str, raw_connection: Any) -> None:
        self._cursor = cursor
        self.vendor = vendor
        self._raw = raw_connection

    def ident(self, dotted: str) -> str:
        parts = dotted.split(".")
        if self.vendor == "postgresql":
            return sql.Identifier(*parts).as_string(self._raw)
        return ".".join(connection.ops.quote_name(p) for p in parts)

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


def _checked_destination(source: DataSource, dsn: str) -> dict[str, str]:
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
    and its trace event commit or roll back together. An external source has its own connection and
    transaction, committed when the block ends.
    """
    if source.kind == SourceKind.BUILTIN:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    if connection.vendor == "postgresql":
                        # SET LOCAL: ends with the surrounding transaction. Not a parameter: SET takes none.
                        cursor.execute(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}")
                    connection.ensure_connection()
                    yield Runner(cursor, connection.vendor, connection.connection)
        except DomainError:
            raise
        except DatabaseError as exc:
            raise _map_error(exc) from None
        return
    dsn = crypto.decrypt(source.dsn_encrypted, what=f"the DSN of data source {source.name!r}")
    destination = _checked_destination(source, dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **destination) as conn:
            with conn.transaction():
                with conn.cursor() as cursor:
                    cursor.execute(
                        sql.SQL("SET LOCAL statement_timeout = {}").format(
                            sql.Literal(int(STATEMENT_TIMEOUT_MS))
                        )
                    )
                    yield Runner(cursor, "postgresql", conn)
    except DomainError:
        raise
    except psycopg.Error as exc:
        if type(exc) is psycopg.OperationalError:  # connecting failed (subclasses are statement errors)
            logger.warning("data source %s unreachable", source.source_id)
            raise InvalidState(
                f"data source {source.source_id} is unreachable; retry later or ask an admin to check it"
            ) from None
        raise _map_error(exc) from None
