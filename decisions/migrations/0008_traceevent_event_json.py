"""Issue 17: each trace event's JSON text, written once by PostgreSQL when the event is inserted.

``decision_trace`` answers an event as ``event_as_dict`` gives it; on PostgreSQL a page's events were
written as JSON text by the read's own query, every read (``to_json``/``to_char`` and ``jsonb``'s
text for each of 1,000 events: most of the read, docs/performance.md section 24). The text is now a
STORED generated column, ``event_json``, so the read selects it:

* it cannot be written: an INSERT naming it is refused, PostgreSQL computes it from the row's own
  columns (an UPDATE — refused anyway, the table is append-only — would compute it again), so it
  always says what the columns say;
* a generated column takes only IMMUTABLE functions, and ``to_json`` and ``to_char`` are STABLE (for
  some types and format patterns they depend on settings). ``tracemem_event_json`` is declared
  IMMUTABLE because, for what it calls them with, they depend on nothing but their arguments:
  ``to_json`` of ``text`` escapes JSON's characters only; ``to_char`` gets a timestamp already in
  UTC (``timezone('UTC', …)``, immutable) and a pattern of numeric fields only (no ``TM`` names,
  nothing from ``lc_time``); ``jsonb`` and ``integer`` are written by their output functions, which
  read no setting (``jsonb`` stores numbers as ``numeric``: ``extra_float_digits`` plays no part);
* it is PL/pgSQL (a SQL function here is planned again by every INSERT: ~0.2 ms an event, where
  PL/pgSQL's cached expression costs ~15-40 µs), and every name in it is schema-qualified, so what
  it computes never depends on a session's ``search_path`` (nor on restore's empty one);
* adding the column rewrites the table once (every existing event gets its text; no trigger fires).

The model does not declare the column: the ORM never selects or inserts it, and SQLite (the embedded
default) keeps the model path.
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL

ARGUMENTS = "text, text, integer, text, timestamp with time zone, jsonb, jsonb, text, text"

EVENT_JSON_FUNCTION = """
CREATE FUNCTION tracemem_event_json(
    p_decision_id text, p_event_id text, p_seq integer, p_type text, p_timestamp timestamp with time zone,
    p_actor jsonb, p_payload jsonb, p_prev_hash text, p_hash text
) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN pg_catalog.concat(
        '{"decision_id":', pg_catalog.to_json(p_decision_id),
        ',"event_id":', pg_catalog.to_json(p_event_id),
        ',"seq":', p_seq,
        ',"type":', pg_catalog.to_json(p_type),
        ',"timestamp":"', pg_catalog.to_char(pg_catalog.timezone('UTC', p_timestamp), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        '","actor":', p_actor,
        ',"payload":', p_payload,
        ',"prev_hash":', pg_catalog.to_json(p_prev_hash),
        ',"hash":', pg_catalog.to_json(p_hash),
        '}'
    );
END
$$"""

ADD_COLUMN = (
    "ALTER TABLE decisions_traceevent ADD COLUMN event_json text GENERATED ALWAYS AS ("
    'tracemem_event_json(decision_id, event_id, seq, type, "timestamp", actor, payload, prev_hash, hash)'
    ") STORED"
)


class Migration(migrations.Migration):
    dependencies = [("decisions", "0007_decision_decision_denied_created")]

    operations = [
        VendorSQL(
            forwards={"postgresql": [EVENT_JSON_FUNCTION, ADD_COLUMN]},
            backwards={
                "postgresql": [
                    "ALTER TABLE decisions_traceevent DROP COLUMN event_json",
                    f"DROP FUNCTION tracemem_event_json({ARGUMENTS})",
                ]
            },
        )
    ]
