"""Least-privilege PostgreSQL roles (docs/contract/interfaces.md; the threat model is docs/security.md).

Three roles share TraceMem's database:

* the **owner** (``MIGRATION_DATABASE_URL``) owns every table, trigger and function; ``migrate``,
  ``db_roles`` and seed_demo's demo tables use it, the running server never does;
* the **app role** (``DATABASE_URL``), which the web server and the workers log in as, owns
  nothing: SELECT, INSERT, UPDATE, DELETE on TraceMem's tables, only SELECT and INSERT on the
  append-only ones (:data:`APPEND_ONLY_TABLES`), never TRUNCATE, REFERENCES or TRIGGER;
* the **products role** (``TRACEMEM_PRODUCTS_ROLE``, no login) reaches only the business schema
  (``TRACEMEM_DATA_SCHEMA``); the app role may ``SET LOCAL ROLE`` to it inside a built-in data
  product's transaction but does not inherit its privileges.

Grants are computed from what exists, so they are re-applied after every ``migrate`` (the
``migrate`` command does it when the app role exists) and by ``db_roles``, which also creates
missing roles. Tables the owner adds to the business schema later are covered by default
privileges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.apps import apps
from django.conf import settings
from django.db import connection, connections, transaction
from psycopg import sql

# The app role may only read and append to these tables; their migrations make the database refuse
# UPDATE, DELETE and TRUNCATE to everyone (``AppendOnly("table")``, tracemem_core/migration_ops.py,
# or the audit log's own triggers). A new append-only table is one line here.
APPEND_ONLY_TABLES = (
    "audit_auditentry",
    "decisions_decisionrecord",
    "decisions_receipt",
    "decisions_traceevent",
    "receiptlog_checkpoint",
    "receiptlog_logleaf",
)
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY_PRIVILEGES = "SELECT, INSERT"
# Read by the app role but written only by `migrate`.
READ_ONLY_TABLES = ("django_migrations",)
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleError(Exception):
    """A role setup TraceMem refuses to create (the message says what to do)."""


@dataclass(frozen=True)
class Statement:
    sql: str
    shown: str  # what --dry-run prints: the same SQL with any password masked


def owner_conninfo() -> str:
    """libpq connection string of the owner on TraceMem's database (the default connection's
    database name, so a test database is covered too)."""
    owner: dict[str, Any] = settings.MIGRATION_DATABASE or {}
    if owner.get("ENGINE") != "django.db.backends.postgresql":
        raise RoleError("database roles need PostgreSQL (DATABASE_URL=postgres://...)")
    params = {
        "host": owner.get("HOST") or None,
        "port": owner.get("PORT") or None,
        "user": owner.get("USER") or None,
        "password": owner.get("PASSWORD") or None,
        "dbname": connections["default"].settings_dict["NAME"],
    }
    options = owner.get("OPTIONS") or {}
    params.update({k: v for k, v in options.items() if k in ("sslmode", "sslrootcert", "sslcert", "sslkey")})
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def owner_is_app_role() -> bool:
    """True when DATABASE_URL and MIGRATION_DATABASE_URL log in as the same role (one-role setups,
    the embedded default)."""
    owner = settings.MIGRATION_DATABASE
    if owner is None:
        return True
    default = connections["default"].settings_dict
    return all(owner.get(k) == default.get(k) for k in ("USER", "HOST", "PORT"))


@contextmanager
def owner_connection() -> Iterator[psycopg.Connection[Any]]:
    """A connection as the owner, committed when the block ends (rolled back on an error)."""
    with psycopg.connect(owner_conninfo()) as conn:
        yield conn


@contextmanager
def owner_cursor() -> Iterator[Any]:
    """A cursor (``%s`` parameters) logged in as the owner, for DDL the app role may not run
    (seed_demo's business tables). Committed when the block ends. With one role for everything
    (the embedded default, or MIGRATION_DATABASE_URL unset) it is the app's own connection."""
    if connection.vendor != "postgresql" or owner_is_app_role():
        with transaction.atomic(), connection.cursor() as cursor:
            yield cursor
        return
    with owner_connection() as conn, conn.cursor() as cursor:
        yield cursor


def use_owner_credentials(alias: str = "default") -> None:
    """Make Django's ``alias`` connection log in as the owner from now on (``migrate``)."""
    owner = settings.MIGRATION_DATABASE
    connection = connections[alias]
    if owner is None or owner_is_app_role():
        return
    connection.close()
    for key in ("USER", "PASSWORD", "HOST", "PORT"):
        connection.settings_dict[key] = owner.get(key)


def _ident(conn: psycopg.Connection[Any], *names: str) -> str:
    return ", ".join(sql.Identifier(name).as_string(conn) for name in names)


def _literal(conn: psycopg.Connection[Any], value: str) -> str:
    return sql.Literal(value).as_string(conn)


def _rows(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


def _role(conn: psycopg.Connection[Any], name: str) -> tuple[bool, bool] | None:
    """(superuser, owns something in this database) of an existing role, or None."""
    found = _rows(conn, "SELECT oid, rolsuper FROM pg_roles WHERE rolname = %s", [name])
    if not found:
        return None
    oid, superuser = found[0]
    owns = _rows(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relowner = %s) "
        "OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = %s) "
        "OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = %s)",
        [oid, oid, oid],
    )[0][0]
    return bool(superuser), bool(owns)


def _check_role(conn: psycopg.Connection[Any], name: str, owner: str, what: str) -> bool:
    """Refuse a role that would hold more than its share; True when it exists already."""
    if name == owner:
        raise RoleError(f"{name} is the owner (MIGRATION_DATABASE_URL): the {what} must be a role of its own")
    state = _role(conn, name)
    if state is None:
        return False
    superuser, owns = state
    if superuser:
        raise RoleError(
            f"{name} is a superuser, which bypasses every protection: choose another {what} "
            f"(or ALTER ROLE {name} NOSUPERUSER first)"
        )
    if owns:
        raise RoleError(
            f"{name} owns objects in this database: the {what} must own nothing "
            f"(REASSIGN OWNED BY {name} TO {owner} first)"
        )
    return True


def _django_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """TraceMem's tables (every installed model's) that exist in the app schema, sorted."""
    existing = {
        row[0] for row in _rows(conn, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    }
    return sorted({model._meta.db_table for model in apps.get_models(include_auto_created=True)} & existing)


def role_statements(
    conn: psycopg.Connection[Any],
    *,
    app_user: str,
    products_user: str | None,
    app_password: str | None,
    create_roles: bool = True,
) -> list[Statement]:
    """The SQL that gives each role exactly its share, from the database as it is now.

    Idempotent: existing grants on TraceMem's tables are revoked and granted again in the same
    transaction, so a privilege added by hand (TRUNCATE, say) disappears on the next run.
    """
    owner, server_version, database, app_schema = _rows(
        conn,
        "SELECT current_user, current_setting('server_version_num')::int, current_database(), current_schema()",
    )[0]
    data_schema = settings.TRACEMEM_DATA_SCHEMA
    app_exists = _check_role(conn, app_user, owner, "app role")
    products_exists = products_user is not None and _check_role(conn, products_user, owner, "products role")
    app, schema, data = _ident(conn, app_user), _ident(conn, app_schema), _ident(conn, data_schema)
    out: list[Statement] = []

    def add(text: str, shown: str | None = None) -> None:
        out.append(Statement(text, shown or text))

    attributes = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    if not app_exists:
        if not create_roles:
            raise RoleError(f"role {app_user} does not exist; run manage.py db_roles --app-user {app_user}")
        # Two concurrent runs (the test suites of two checkouts) may both find the role missing.
        add(
            "DO $$ BEGIN CREATE ROLE "
            f"{app} LOGIN {attributes}; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
            f"CREATE ROLE {app} LOGIN {attributes}",
        )
    add(f"ALTER ROLE {app} LOGIN {attributes}")
    if app_password:
        add(
            f"ALTER ROLE {app} PASSWORD {_literal(conn, app_password)}",
            f"ALTER ROLE {app} PASSWORD '********'",
        )
    db = _ident(conn, database)
    add(f"GRANT CONNECT ON DATABASE {db} TO {app}")
    # No temporary tables: a temporary table comes first on its session's search path, where it
    # could stand in for one of TraceMem's (the trigger functions pin their own path as well).
    add(f"REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC")
    add(f"REVOKE TEMPORARY ON DATABASE {db} FROM {app}")
    # Nobody but the owner creates objects where TraceMem's tables live (PUBLIC may, before PostgreSQL 15).
    add(f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC")
    add(f"GRANT USAGE ON SCHEMA {schema} TO {app}")

    tables = _django_tables(conn)
    append_only = [t for t in tables if t in APPEND_ONLY_TABLES]
    add(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {app}")
    add(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {app}")
    writable = [t for t in tables if t not in APPEND_ONLY_TABLES and t not in READ_ONLY_TABLES]
    if writable:
        add(f"GRANT {TABLE_PRIVILEGES} ON {_ident(conn, *writable)} TO {app}")
    if append_only:
        add(f"GRANT {APPEND_ONLY_PRIVILEGES} ON {_ident(conn, *append_only)} TO {app}")
    read_only = [t for t in tables if t in READ_ONLY_TABLES]
    if read_only:
        add(f"GRANT SELECT ON {_ident(conn, *read_only)} TO {app}")
    sequences = [
        row[0]
        for row in _rows(
            conn,
            "SELECT s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND t.relname = ANY(%s) "
            "AND t.relnamespace = current_schema()::regnamespace ORDER BY 1",
            [writable],
        )
    ]
    if sequences:
        add(f"GRANT USAGE ON SEQUENCE {_ident(conn, *sequences)} TO {app}")

    # The business schema, owned by the owner: built-in data products reach nothing else.
    add(f"CREATE SCHEMA IF NOT EXISTS {data}")
    add(f"REVOKE ALL ON SCHEMA {data} FROM PUBLIC")
    business = _ident(conn, products_user) if products_user else app
    if products_user:
        products = business
        if not products_exists:
            if not create_roles:
                raise RoleError(
                    f"role {products_user} does not exist; run manage.py db_roles --products-user ..."
                )
            add(
                "DO $$ BEGIN CREATE ROLE "
                f"{products} NOLOGIN {attributes.replace('NOINHERIT', 'INHERIT')}; "
                "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
                f"CREATE ROLE {products} NOLOGIN {attributes.replace('NOINHERIT', 'INHERIT')}",
            )
        # Nothing of TraceMem's own, even if granted by hand before.
        add(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {products}")
        add(f"REVOKE TEMPORARY ON DATABASE {db} FROM {products}")
        add(f"REVOKE ALL ON SCHEMA {data} FROM {app}")
        add(f"REVOKE ALL ON ALL TABLES IN SCHEMA {data} FROM {app}")
        # Membership without inheritance: the app role may SET ROLE to it, and has none of its privileges.
        if server_version >= 160000:
            add(f"GRANT {products} TO {app} WITH INHERIT FALSE, SET TRUE")
        else:
            add(f"GRANT {products} TO {app}")
    add(f"GRANT USAGE ON SCHEMA {data} TO {business}")
    add(f"REVOKE ALL ON ALL TABLES IN SCHEMA {data} FROM {business}")
    add(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {data} TO {business}")
    add(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {data} TO {business}")
    owner_ident = _ident(conn, owner)
    add(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_ident} IN SCHEMA {data} "
        f"GRANT {TABLE_PRIVILEGES} ON TABLES TO {business}"
    )
    add(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_ident} IN SCHEMA {data} GRANT USAGE ON SEQUENCES TO {business}"
    )
    return out


def apply(conn: psycopg.Connection[Any], statements: list[Statement]) -> None:
    for statement in statements:
        conn.execute(statement.sql)


def app_role_from_settings() -> tuple[str, str | None] | None:
    """(app role, its password) when DATABASE_URL logs in as a role other than the owner, else None."""
    if owner_is_app_role():
        return None
    default = connections["default"].settings_dict
    return default["USER"], default.get("PASSWORD") or None


def regrant_after_migrate(app_user: str) -> str:
    """Re-apply the app and products roles' grants after ``migrate`` created or changed tables.

    ``app_user`` is the role DATABASE_URL logs in as (a role of its own, not the owner); nothing
    happens until ``db_roles`` has created it. Returns a line for the command's output.
    """
    products_user = settings.TRACEMEM_PRODUCTS_ROLE or None
    with owner_connection() as conn:
        if not _rows(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", [app_user]):
            return f"Role {app_user} does not exist yet: run manage.py db_roles --app-user {app_user}."
        if products_user and not _rows(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", [products_user]):
            products_user = None
        apply(
            conn,
            role_statements(
                conn, app_user=app_user, products_user=products_user, app_password=None, create_roles=False
            ),
        )
    return f"Grants of {app_user}{f' and {products_user}' if products_user else ''} re-applied (db_roles)."
