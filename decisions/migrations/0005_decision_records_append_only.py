"""A decision record's searchable row is append-only, like the record event it repeats.

``decisions_decisionrecord`` holds the text of a ``decision_record`` (title, context, decision,
rationale, ...) for search and for the pages and APIs that show it; the same text is in the
record's one ``record`` event, which the trace's chain and the receipt pin. The server never
changes a record row after creating it, yet the app role could UPDATE it and what people read would
no longer be what was signed (found in the issue 11 audit). UPDATE, DELETE and TRUNCATE are now
refused to everyone (and the app role holds only SELECT and INSERT: dbroles.APPEND_ONLY_TABLES);
an edit made around that is reported by verify_traces (decisions.integrity).
"""

from django.db import migrations

from tracemem_core.migration_ops import AppendOnly


class Migration(migrations.Migration):
    dependencies = [("decisions", "0004_trust_functions_pin_search_path")]

    operations = [AppendOnly("decisions_decisionrecord")]
