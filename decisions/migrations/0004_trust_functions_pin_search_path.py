"""The trust trigger functions of 0003 read their own tables, never a namesake first on the caller's
search path.

They name ``decisions_decision``, ``decisions_traceevent`` and ``decisions_receipt`` without a schema,
and PostgreSQL searches a session's temporary schema first: a session that created ``TEMP TABLE
decisions_decision`` with a row saying ``open`` could append events to a closed decision, forge a
receipt for an open one, or close one without its receipt. Each function now runs with
``search_path = pg_catalog, <TraceMem's schema>, pg_temp`` (and ``db_roles`` takes the right to
create temporary tables away from the app role too: docs/security.md).
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL, pin_search_path

FUNCTIONS = (
    "tracemem_refuse_change",
    "tracemem_trace_event_insert",
    "tracemem_decision_insert",
    "tracemem_decision_update",
    "tracemem_decision_delete",
    "tracemem_receipt_insert",
    "tracemem_decision_closed_with_receipt",
)


class Migration(migrations.Migration):
    dependencies = [("decisions", "0003_trust_triggers_and_receipts")]

    operations = [
        VendorSQL(
            forwards={"postgresql": pin_search_path(*FUNCTIONS)},
            backwards={"postgresql": [f"ALTER FUNCTION {name}() RESET search_path" for name in FUNCTIONS]},
        )
    ]
