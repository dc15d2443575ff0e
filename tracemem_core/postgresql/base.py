"""Django's PostgreSQL backend with a connection check that costs no round trip (issue 17).

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
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
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
