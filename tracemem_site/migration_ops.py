"""Migration operations for the database's own protections (docs/security.md).

Trust-critical triggers are plain SQL owned by the table owner: unlike pgtrigger's, they consult
no session setting, so the app role (which owns nothing) has no switch that turns them off.

To make a new table append-only, add one line to its migration::

    AppendOnly("app_table"),

``manage.py db_roles`` (and ``migrate``, which re-applies the grants) finds append-only tables by
this trigger and grants the app role only SELECT and INSERT on them.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations.base import Operation

APPEND_ONLY_TRIGGER = "tracemem_append_only"

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


class AppendOnly(VendorSQL):
    """Refuse UPDATE, DELETE and TRUNCATE on ``table`` to everyone, by a trigger no session can skip."""

    def __init__(self, table: str) -> None:
        self.table = table
        sqlite_refusal = "SELECT RAISE(ABORT, 'tracemem: {table} is append-only: {op} is refused')"
        super().__init__(
            forwards={
                "postgresql": [
                    _REFUSE_FUNCTION,
                    f"CREATE TRIGGER {APPEND_ONLY_TRIGGER} BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION tracemem_refuse_change()",
                    f"CREATE TRIGGER {APPEND_ONLY_TRIGGER}_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_refuse_change()",
                ],
                "sqlite": [
                    f"CREATE TRIGGER {APPEND_ONLY_TRIGGER}_{table}_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN {sqlite_refusal.format(table=table, op=op)}; END"
                    for op in ("UPDATE", "DELETE")
                ],
            },
            backwards={
                "postgresql": [
                    f"DROP TRIGGER {APPEND_ONLY_TRIGGER} ON {table}",
                    f"DROP TRIGGER {APPEND_ONLY_TRIGGER}_truncate ON {table}",
                ],
                "sqlite": [f"DROP TRIGGER {APPEND_ONLY_TRIGGER}_{table}_{op}" for op in ("update", "delete")],
            },
        )

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return ("tracemem_site.migration_ops.AppendOnly", [self.table], {})

    def describe(self) -> str:
        return f"Make {self.table} append-only (plain SQL triggers)"
