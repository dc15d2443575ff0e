"""``decision_wait`` wakes on the commit that changes a decision (issue 16).

A plain trigger on ``decisions_decision`` sends ``NOTIFY tracemem_decision, '<decision_id>'`` when a
row's ``status``, ``approval_status`` or ``pending_approval_id`` changes. PostgreSQL delivers a
notification only when (and if) the transaction commits, so a waiting agent wakes on the approval's
commit and never on a change that was rolled back, whatever door or worker made it (a vote in the
browser, an email link, Slack, a webhook reply, the expiry tick). One listening connection per web
process receives them (``tracemem_core.waits``). SQLite (the embedded default) has no NOTIFY: its
waits re-check every second instead.
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL, enable_always, pin_search_path

CHANNEL = "tracemem_decision"

PG_NOTIFY = [
    f"""
CREATE FUNCTION tracemem_decision_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.decision_id);
    RETURN NULL;
END
$$""",
    "CREATE TRIGGER tracemem_decision_notify AFTER UPDATE ON decisions_decision FOR EACH ROW "
    "WHEN ((OLD.status, OLD.approval_status, OLD.pending_approval_id) "
    "IS DISTINCT FROM (NEW.status, NEW.approval_status, NEW.pending_approval_id)) "
    "EXECUTE FUNCTION tracemem_decision_notify()",
    *enable_always("decisions_decision", "tracemem_decision_notify"),
    *pin_search_path("tracemem_decision_notify"),
]


class Migration(migrations.Migration):
    dependencies = [("decisions", "0005_decision_records_append_only")]

    operations = [
        VendorSQL(
            forwards={"postgresql": PG_NOTIFY},
            backwards={
                "postgresql": [
                    "DROP TRIGGER tracemem_decision_notify ON decisions_decision",
                    "DROP FUNCTION tracemem_decision_notify()",
                ]
            },
        )
    ]
