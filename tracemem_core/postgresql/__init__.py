"""TraceMem's PostgreSQL database backend: Django's, with a connection check that costs no round trip
and prepared statements for our own hot statements (``base.DatabaseWrapper``; settings.DATABASES
sets ``ENGINE`` to this package)."""

from __future__ import annotations

from typing import Any

from django.db import connection


def prepared_cursor() -> Any:
    """A cursor of the default database for one of our own fixed, plain statements on the hot path:
    server-side bound and prepared on PostgreSQL when the connection prepares
    (``DatabaseWrapper.prepared_cursor``); the ordinary cursor anywhere else. Never for the ORM's
    statements, nor for text built per call (each distinct text would be prepared and kept)."""
    make = getattr(connection, "prepared_cursor", None)
    return make() if make is not None else connection.cursor()
