"""Every committed change of an agent or a key tells every web process to forget the keys it remembers
(audit2 K1: ``QuerySet.update()``, ``delete()`` and SQL in psql send no Django signal).

Plain triggers, owned by the table owner and ENABLE ALWAYS like the other trust triggers
(``tracemem_core.migration_ops``), send ``NOTIFY tracemem_credentials`` on any UPDATE or DELETE of
``agents_agent`` and ``agents_agentkey`` (and TRUNCATE), whatever process or role made it.
PostgreSQL delivers it when (and if) the transaction commits; each web process's listening
connection (``tracemem_core.waits``) then drops its remembered keys (``agents.keycache``).

A key's ``last_used_at`` alone is written on authentication (a hint, not a credential): those
updates notify nobody, or every authentication would empty every process's cache. Rows, not
statements, for ``agents_agentkey`` so that condition can see OLD and NEW; one transaction's
notifications with the same payload reach a listener once. SQLite has no NOTIFY: nothing is
remembered there without it.
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL, enable_always, pin_search_path

CHANNEL = "tracemem_credentials"
TRIGGERS = {
    "agents_agent": ["tracemem_agent_changed", "tracemem_agent_truncated"],
    "agents_agentkey": ["tracemem_agentkey_changed", "tracemem_agentkey_deleted", "tracemem_agentkey_truncated"],
}

PG_NOTIFY = [
    f"""
CREATE FUNCTION tracemem_credentials_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$""",
    "CREATE TRIGGER tracemem_agent_changed AFTER UPDATE OR DELETE ON agents_agent "
    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_credentials_notify()",
    "CREATE TRIGGER tracemem_agent_truncated AFTER TRUNCATE ON agents_agent "
    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_credentials_notify()",
    "CREATE TRIGGER tracemem_agentkey_changed AFTER UPDATE ON agents_agentkey FOR EACH ROW "
    "WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at')) "
    "EXECUTE FUNCTION tracemem_credentials_notify()",
    "CREATE TRIGGER tracemem_agentkey_deleted AFTER DELETE ON agents_agentkey "
    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_credentials_notify()",
    "CREATE TRIGGER tracemem_agentkey_truncated AFTER TRUNCATE ON agents_agentkey "
    "FOR EACH STATEMENT EXECUTE FUNCTION tracemem_credentials_notify()",
    *[statement for table, names in TRIGGERS.items() for statement in enable_always(table, *names)],
    *pin_search_path("tracemem_credentials_notify"),
]


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_personal_token_expiry")]

    operations = [
        VendorSQL(
            forwards={"postgresql": PG_NOTIFY},
            backwards={
                "postgresql": [
                    *[f"DROP TRIGGER {name} ON {table}" for table, names in TRIGGERS.items() for name in names],
                    "DROP FUNCTION tracemem_credentials_notify()",
                ]
            },
        )
    ]
