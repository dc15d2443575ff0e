"""Telling a dependency outage from a bug, so every door can answer it clearly (docs/contract/interfaces.md Errors).

PostgreSQL unreachable, restarting, refusing connections or cutting ours surfaces as Django's
``OperationalError`` / ``InterfaceError``. Every service runs in one transaction, so when one of
these escapes a call, PostgreSQL rolled the whole call back: it was **not applied** and can simply
be repeated. Two exceptions, both said plainly in the answer: a connection lost *while committing*
(nobody can know whether the commit landed: ``applied: "unknown"``; so is one lost during a statement
that commits by itself: :func:`committing_statement`), and a connection lost *after*
the call's transaction committed, while the answer was being read back (``applied: true``: do not
repeat it, read the result). :func:`tracking_commits` notices the latter for each request.

Each door maps the result in its one place: REST (``tracemem_site.rest.exception_handler``), MCP
(``tracemem_site.mcp``), HTML (``tracemem_site.middleware``).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import InterfaceError, OperationalError, connection

from tracemem_core import metrics
from tracemem_core.errors import Unavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class _Commits:
    """Whether a transaction of this request has committed (its on_commit marker ran)."""

    def __init__(self) -> None:
        self.committed = False

    def mark(self) -> None:
        self.committed = True


_request_commits: ContextVar[_Commits | None] = ContextVar("tracemem_request_commits", default=None)


def _note_transaction(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
    # A query inside a transaction: make sure the transaction's commit, if it happens, is noticed.
    commits = _request_commits.get()
    conn = context["connection"]
    if commits is not None and conn.in_atomic_block:
        if not any(hook == commits.mark for _, hook, _ in conn.run_on_commit):
            conn.on_commit(commits.mark)
    return execute(sql, params, many, context)


@contextmanager
def tracking_commits() -> Iterator[None]:
    """Around one request: remember whether any of its transactions committed."""
    token = _request_commits.set(_Commits())
    try:
        with connection.execute_wrapper(_note_transaction):
            yield
    finally:
        _request_commits.reset(token)


@contextmanager
def closing_if_lost() -> Iterator[None]:
    """Around statements run outside any transaction: a connection lost during them is closed at once
    (as Django closes one whose transaction could not be rolled back), so the next statement of the
    request, or of the thread's next request, connects again instead of failing on the dead one."""
    try:
        yield
    except (OperationalError, InterfaceError):
        connection.close_if_unusable_or_obsolete()
        raise


class CommittingStatement:
    """What :func:`committing_statement` yields: a statement that turns out to have written nothing
    (a compare-and-swap that found its row changed) sets ``wrote`` to False, so the request has not
    committed anything and a later outage still says "not applied"."""

    def __init__(self) -> None:
        self.wrote = True


@contextmanager
def committing_statement() -> Iterator[CommittingStatement]:
    """Around one statement run outside any transaction, so that it commits by itself
    (``decision_create``'s one INSERT, an append's compare-and-swap): a connection lost during it was
    lost while committing (``applied: "unknown"``), and once it has returned having written something,
    the request has committed something (an outage later in the request says ``applied: true``), as
    with a transaction's ``COMMIT``."""
    statement = CommittingStatement()
    try:
        with closing_if_lost():
            yield statement
    except (OperationalError, InterfaceError) as exc:
        setattr(exc, "tracemem_lost_while_committing", True)  # noqa: B010 (read back by _lost_while_committing)
        raise
    commits = _request_commits.get()
    if commits is not None and statement.wrote:
        commits.mark()


def _lost_while_committing(exc: BaseException) -> bool:
    if getattr(exc, "tracemem_lost_while_committing", False):
        return True
    return any(
        frame.f_code.co_name == "commit" and frame.f_code.co_filename.endswith("db/backends/base/base.py")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def database_outage(exc: BaseException) -> Unavailable | None:
    """The ``unavailable`` error for a database outage, or None if ``exc`` is something else.

    Logs one line (no traceback: an outage is not a bug) and counts it in
    ``tracemem_dependency_errors_total{dependency="database"}``.
    """
    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    metrics.incr("tracemem_dependency_errors_total", dependency="database")
    logger.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    commits = _request_commits.get()
    if commits is not None and commits.committed:
        return Unavailable(
            "this call was applied, but TraceMem's database became unavailable before its answer could be "
            f"read back; do not repeat it: read the result (e.g. decision_get) after {RETRY_AFTER_SECONDS} "
            "seconds",
            retry_after=RETRY_AFTER_SECONDS,
            applied=True,
        )
    if _lost_while_committing(exc):
        return Unavailable(
            "the connection to TraceMem's database was lost while committing, so this call may or may not "
            f"have been applied; check (e.g. decision_get) before repeating it, after {RETRY_AFTER_SECONDS} "
            "seconds",
            retry_after=RETRY_AFTER_SECONDS,
            applied="unknown",
        )
    return Unavailable(
        "TraceMem's database is unavailable right now; this call was not applied (nothing was recorded). "
        f"Retry after {RETRY_AFTER_SECONDS} seconds",
        retry_after=RETRY_AFTER_SECONDS,
    )
