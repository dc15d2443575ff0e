"""The database refuses UPDATE, DELETE and TRUNCATE on the audit log.

Plain SQL triggers, not django-pgtrigger: pgtrigger's triggers step aside for any session that runs
``SET pgtrigger.ignore``, these consult no setting. On PostgreSQL they are ENABLE ALWAYS, so a
session in ``session_replication_role = replica`` does not skip them either; only the table's
owner can drop or disable them (the app role owns nothing: docs/security.md).
"""

from django.db import migrations

POSTGRESQL_FORWARD = """
CREATE OR REPLACE FUNCTION audit_auditentry_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the admin audit log is append-only: % on audit_auditentry is refused', TG_OP;
END
$$;
CREATE TRIGGER audit_auditentry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_auditentry_refuse_change();
CREATE TRIGGER audit_auditentry_no_truncate
    BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_auditentry_refuse_change();
ALTER TABLE audit_auditentry ENABLE ALWAYS TRIGGER audit_auditentry_append_only;
ALTER TABLE audit_auditentry ENABLE ALWAYS TRIGGER audit_auditentry_no_truncate;
"""
POSTGRESQL_REVERSE = """
DROP TRIGGER IF EXISTS audit_auditentry_no_truncate ON audit_auditentry;
DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_auditentry_refuse_change();
"""
# SQLite (the embedded default) has no TRUNCATE; a DELETE without WHERE fires the row trigger.
SQLITE_FORWARD = [
    "CREATE TRIGGER audit_auditentry_no_update BEFORE UPDATE ON audit_auditentry "
    "BEGIN SELECT RAISE(ABORT, 'the admin audit log is append-only: UPDATE on audit_auditentry is refused'); END",
    "CREATE TRIGGER audit_auditentry_no_delete BEFORE DELETE ON audit_auditentry "
    "BEGIN SELECT RAISE(ABORT, 'the admin audit log is append-only: DELETE on audit_auditentry is refused'); END",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS audit_auditentry_no_update",
    "DROP TRIGGER IF EXISTS audit_auditentry_no_delete",
]


def _run(schema_editor, postgresql, sqlite):
    vendor = schema_editor.connection.vendor
    statements = [postgresql] if vendor == "postgresql" else sqlite if vendor == "sqlite" else []
    for statement in statements:
        schema_editor.execute(statement, params=None)


def forward(apps, schema_editor):
    _run(schema_editor, POSTGRESQL_FORWARD, SQLITE_FORWARD)


def reverse(apps, schema_editor):
    _run(schema_editor, POSTGRESQL_REVERSE, SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forward, reverse)]
