"""Migration operations for the database's own protections (docs/security.md).

Trust-critical triggers are plain SQL owned by the table owner and ENABLE ALWAYS: unlike
pgtrigger's, they consult no session setting (``pgtrigger.ignore``), and ``session_replication_role
= replica`` does not skip them either. The app role owns nothing, so it can neither drop nor
disable them; only the owner (or a superuser) can, with DDL. Their functions pin their search path
(:func:`pin_search_path`), so a table of the same name that a session puts first on its own path (a
temporary table) is never what they read.

A new append-only table takes one line in its migration, ``AppendOnly("app_table")``, and one in
``tracemem_core.dbroles.APPEND_ONLY_TABLES``, which grants the app role only SELECT and INSERT on it.
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
        return ("tracemem_core.migration_ops.VendorSQL", [self.forwards, self.backwards], {})

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


def pin_search_path(*functions: str) -> list[str]:
    """Make the trigger ``functions`` (no arguments) resolve names in ``pg_catalog``, then TraceMem's
    schema, then — last, never first — the session's temporary schema, whatever the calling session's
    ``search_path`` says (PostgreSQL). Otherwise ``CREATE TEMP TABLE decisions_decision`` would stand
    in for the real table inside the trigger."""
    return [
        "DO $$ BEGIN "
        + " ".join(
            f"EXECUTE format('ALTER FUNCTION {function}() SET search_path = pg_catalog, %I, pg_temp', "
            "current_schema());"
            for function in functions
        )
        + " END $$"
    ]


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
                    *pin_search_path("tracemem_refuse_change"),
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
        return ("tracemem_core.migration_ops.AppendOnly", [self.table], {})

    def describe(self) -> str:
        return f"Make {self.table} append-only (plain SQL triggers)"


class FrozenRows(VendorSQL):
    """Freeze rows of ``table`` once ``frozen`` holds (an SQL condition over OLD): an UPDATE that
    changes one of ``columns`` or meets ``refused_change`` (a condition over OLD and NEW, e.g. a
    status going back) is refused, and so is a DELETE — to everyone, whatever the session says.

    One plain trigger ``<function>`` like the trace's (ENABLE ALWAYS, search path pinned). It
    replaces django-pgtrigger's "frozen" triggers, which stepped aside for ``SET pgtrigger.ignore``.
    The messages are ``format()`` patterns whose ``%`` take ``names`` (columns of OLD) in order.
    """

    def __init__(
        self,
        table: str,
        function: str,
        *,
        frozen: str,
        columns: tuple[str, ...],
        refused_change: str,
        update_message: str,
        delete_message: str,
        names: tuple[str, ...],
    ) -> None:
        self.args = [table, function]
        self.kwargs = {
            "frozen": frozen,
            "columns": columns,
            "refused_change": refused_change,
            "update_message": update_message,
            "delete_message": delete_message,
            "names": names,
        }

        def changed(distinct: str) -> str:
            return " OR ".join([*(f"NEW.{c} {distinct} OLD.{c}" for c in columns), f"({refused_change})"])

        def constant(message: str) -> str:  # SQLite's RAISE takes a constant message
            return message.replace("%.%", "%").replace("%", "a row").replace("'", "''")

        old = ", ".join(f"OLD.{name}" for name in names)
        super().__init__(
            forwards={
                "postgresql": [
                    f"""
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF {frozen} THEN
            RAISE EXCEPTION '{delete_message}', {old};
        END IF;
        RETURN OLD;
    END IF;
    IF ({frozen}) AND ({changed("IS DISTINCT FROM")}) THEN
        RAISE EXCEPTION '{update_message}', {old};
    END IF;
    RETURN NEW;
END
$$""",
                    f"CREATE TRIGGER {function} BEFORE UPDATE OR DELETE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {function}()",
                    *enable_always(table, function),
                    *pin_search_path(function),
                ],
                "sqlite": [
                    f"CREATE TRIGGER {function}_update BEFORE UPDATE ON {table} BEGIN SELECT RAISE(ABORT, "
                    f"'{constant(update_message)}') WHERE ({frozen}) AND ({changed('IS NOT')}); END",
                    f"CREATE TRIGGER {function}_delete BEFORE DELETE ON {table} BEGIN SELECT RAISE(ABORT, "
                    f"'{constant(delete_message)}') WHERE {frozen}; END",
                ],
            },
            backwards={
                "postgresql": [f"DROP TRIGGER {function} ON {table}", f"DROP FUNCTION {function}()"],
                "sqlite": [f"DROP TRIGGER {function}_update", f"DROP TRIGGER {function}_delete"],
            },
        )

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return ("tracemem_core.migration_ops.FrozenRows", self.args, self.kwargs)

    def describe(self) -> str:
        return f"Freeze rows of {self.args[0]} (plain SQL trigger {self.args[1]})"
