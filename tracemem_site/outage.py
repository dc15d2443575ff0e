"""Telling a dependency outage from a bug, so every door can answer it clearly (SPEC §12 Errors).

PostgreSQL unreachable, restarting, refusing connections or cutting ours surfaces as Django's
``OperationalError`` / ``InterfaceError``. Every service runs in one transaction, so when one of
these escapes a call, PostgreSQL rolled the whole call back: it was **not applied** and can simply
be repeated. The one exception is a connection lost *while committing*: then nobody can know
whether the commit landed, and the answer says so (``applied: "unknown"``).

Each door maps the result in its one place: REST (``tracemem_site.rest.exception_handler``), MCP
(``tracemem_site.mcp_view``), HTML (``tracemem_site.middleware``).
"""

from __future__ import annotations

import logging
import traceback

from django.db import InterfaceError, OperationalError

from tracemem_site import metrics
from tracemem_site.errors import Unavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def _lost_while_committing(exc: BaseException) -> bool:
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
