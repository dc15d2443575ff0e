"""Migration operations for the database's own protections (docs/security.md).

Trust-critical triggers are plain SQL owned by the table owner and ENABLE ALWAYS: unlike
pgtrigger's, they consult no session setting (``pgtrigger.ignore``), and ``session_replication_role
= replica`` does not skip them either. The app role owns nothing, so it can neither drop nor
disable them; only the owner (or a superuser) can, with DDL.

A new append-only table takes one line in its migration, ``AppendOnly("app_table")``, and one in
``tracemem_site.dbroles.APPEND_ONLY_TABLES``, which grants the app role only SELECT and INSERT on it.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations.base import Operation

_REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION tracemem_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tracemem: % is append-only: % is refused', TG_TABLE_NAME, TG_OP
        USING HINT = 'rows of this table are never changed or removed (docs/security.md)';
END
$$
"""


class VendorSQL(Operation):
    """SQL per database vendor (``postgresql``, ``sqlite``); a vendor not listed runs nothing."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, forwards: dict[str, list[str]], backwards: dict[str, list[str]]) -> None:
        self.forwards = forwards
        self.backwards = backwards

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return ("tracemem_site.migration_ops.VendorSQL", [self.forwards, self.backwards], {})

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def _run(self, schema_editor: Any, statements: dict[str, list[str]]) -> None:
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(schema_editor, self.forwards)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._run(schema_editor, self.backwards)

    def describe(self) -> str:
        return "Database-enforced protections (plain SQL triggers)"


def enable_always(table: str, *triggers: str) -> list[str]:
    """Fire ``triggers`` whatever ``session_replication_role`` says (PostgreSQL)."""
    return [f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}" for trigger in triggers]


class AppendOnly(VendorSQL):
    """Refuse UPDATE, DELETE and TRUNCATE on ``table`` to everyone, by triggers no session can skip:
    ``<table>_append_only`` (rows) and ``<table>_no_truncate``, named like the audit log's."""

    def __init__(self, table: str) -> None:
        self.table = table
        rows, truncate = f"{table}_append_only", f"{table}_no_truncate"
        sqlite_refusal = "SELECT RAISE(ABORT, 'tracemem: {table} is append-only: {op} is refused')"
        super().__init__(
            forwards={
                "postgresql": [
                    _REFUSE_FUNCTION,
                    f"CREATE TRIGGER {rows} BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION tracemem_refuse_change()",
                    f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_refuse_change()",
                    *enable_always(table, rows, truncate),
                ],
                "sqlite": [
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN {sqlite_refusal.format(table=table, op=op)}; END"
                    for op in ("UPDATE", "DELETE")
                ],
            },
            backwards={
                "postgresql": [f"DROP TRIGGER {rows} ON {table}", f"DROP TRIGGER {truncate} ON {table}"],
                "sqlite": [f"DROP TRIGGER {table}_no_{op}" for op in ("update", "delete")],
            },
        )

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return ("tracemem_site.migration_ops.AppendOnly", [self.table], {})

    def describe(self) -> str:
        return f"Make {self.table} append-only (plain SQL triggers)"
