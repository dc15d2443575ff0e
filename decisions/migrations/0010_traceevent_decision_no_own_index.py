"""Issue 17: ``decisions_traceevent.decision_id`` loses its own two indexes (docs/performance.md section 31).

The unique (decision_id, seq) index leads with ``decision_id``, so it serves every lookup by decision —
the trace read and the timeline (decision_id and a seq range, ordered by seq), verify_traces, the admin's
inline, the decision update trigger's check, the foreign key's checks — and the plain index on the column
and its ``varchar_pattern_ops`` twin (for ``LIKE 'prefix%'``, which nothing sends: the admin's search is
``UPPER(...) LIKE '%...%'``, which neither serves) only cost every append two more index insertions.

The model says ``db_index=False``; the database only drops the two indexes. Django's own AlterField
would also drop and re-add the foreign key, and re-adding it checks every event under a lock that
stops appends for as long as that takes; dropping an index is a catalog change (a brief ACCESS
EXCLUSIVE lock on the table, nothing rewritten: docs/operations.md).
"""

import django.db.models.deletion
from django.db import migrations, models

from tracemem_core.migration_ops import VendorSQL

INDEX = "decisions_traceevent_decision_id_35eeca30"


class Migration(migrations.Migration):
    dependencies = [("decisions", "0009_trace_chain_per_statement")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="traceevent",
                    name="decision",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="decisions.decision",
                    ),
                ),
            ],
            database_operations=[
                VendorSQL(
                    forwards={
                        "postgresql": [f"DROP INDEX {INDEX}_like", f"DROP INDEX {INDEX}"],
                        "sqlite": [f"DROP INDEX {INDEX}"],
                    },
                    backwards={
                        "postgresql": [
                            f'CREATE INDEX {INDEX} ON decisions_traceevent ("decision_id")',
                            f'CREATE INDEX {INDEX}_like ON decisions_traceevent ("decision_id" varchar_pattern_ops)',
                        ],
                        "sqlite": [f'CREATE INDEX {INDEX} ON decisions_traceevent ("decision_id")'],
                    },
                ),
            ],
        ),
    ]
