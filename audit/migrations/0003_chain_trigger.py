"""The database refuses an audit entry that does not continue the chain, and the log's trigger
functions pin their search path.

``audit_auditentry`` is appended to by the app role (it writes the log). Its unique ``seq`` and
``prev_hash`` already stop a fork; now an entry must also be the next link — ``seq`` = the last seq
+ 1 and ``prev_hash`` = the last entry's ``hash`` (64 zeros for the first) — like a trace event, so a
gap or an entry chained to nothing is refused rather than found later by ``verify_audit_log``.
The functions run with ``search_path = pg_catalog, <schema>, pg_temp`` (a temporary table named
``audit_auditentry`` is never what they read: tracemem_core.migration_ops.pin_search_path).
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL, enable_always, pin_search_path

GENESIS = "0" * 64
MESSAGE = "tracemem: audit entry seq {seq} does not continue the audit log (the next seq is {next}, its prev_hash the last entry''s hash)"

POSTGRESQL = [
    f"""
CREATE FUNCTION tracemem_audit_entry_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    SELECT seq, hash INTO last_seq, last_hash FROM audit_auditentry ORDER BY seq DESC LIMIT 1;
    IF NEW.seq IS DISTINCT FROM COALESCE(last_seq, 0) + 1
       OR NEW.prev_hash IS DISTINCT FROM COALESCE(last_hash, '{GENESIS}') THEN
        RAISE EXCEPTION '{MESSAGE.format(seq="%", next="%")}', NEW.seq, COALESCE(last_seq, 0) + 1;
    END IF;
    RETURN NEW;
END
$$""",
    "CREATE TRIGGER tracemem_audit_entry_chain BEFORE INSERT ON audit_auditentry "
    "FOR EACH ROW EXECUTE FUNCTION tracemem_audit_entry_insert()",
    *enable_always("audit_auditentry", "tracemem_audit_entry_chain"),
    *pin_search_path("tracemem_audit_entry_insert", "audit_auditentry_refuse_change"),
]
SQLITE = [
    "CREATE TRIGGER tracemem_audit_entry_chain BEFORE INSERT ON audit_auditentry BEGIN "
    "SELECT RAISE(ABORT, 'tracemem: the audit entry does not continue the audit log (seq = last seq + 1, "
    "prev_hash = the last entry''s hash)') "
    "WHERE NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_auditentry) "
    f"OR NEW.prev_hash IS NOT COALESCE((SELECT hash FROM audit_auditentry ORDER BY seq DESC LIMIT 1), '{GENESIS}'); "
    "END"
]


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [
        VendorSQL(
            forwards={"postgresql": POSTGRESQL, "sqlite": SQLITE},
            backwards={
                "postgresql": [
                    "DROP TRIGGER tracemem_audit_entry_chain ON audit_auditentry",
                    "DROP FUNCTION tracemem_audit_entry_insert()",
                    "ALTER FUNCTION audit_auditentry_refuse_change() RESET search_path",
                ],
                "sqlite": ["DROP TRIGGER tracemem_audit_entry_chain"],
            },
        )
    ]
