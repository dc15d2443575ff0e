"""Issue 17: the trace's chain checked once per INSERT statement, and the decision's head moved once.

0003's ``tracemem_trace_event_chain`` was a row trigger: each new event locked its decision, checked it
and UPDATEd the decision's row, so a batch of 100 contexts (one multi-row INSERT) made 100 updates of
the same row, each a new row version firing the decision's own update trigger (an index lookup of the
event) and the ``decision_wait`` notify trigger's condition (docs/performance.md section 31).

It is now a statement trigger reading the statement's new events (a transition table, ``new_events``).
Per decision among them, in ``decision_id`` order (two such statements lock decisions in the same
order), it locks the decision once, checks the events ordered by ``seq`` continue its chain exactly as
0003 checked each one — the first seq = ``event_count`` + 1 and prev_hash = ``trace_head`` (the genesis
hash while there are no events), each next event seq + 1 and prev_hash = the previous event's hash; the
decision not closed, and nothing after a ``close`` or ``record`` event of the same statement; a close
event's action and status agreeing — then moves ``event_count``/``trace_head`` (and, for a close or
record event, ``status``/``closed_at``) ONCE. An INSERT for several decisions is checked and chained
per decision; one that breaks any chain is refused whole. An INSERT of no rows (a compare-and-swap whose
condition no longer held) changes nothing. The messages are 0003's.

What 0003 and 0004 made of the trigger stays: a plain trigger owned by the table owner, ENABLE ALWAYS
(no session setting skips it), its function SECURITY INVOKER with its search path pinned. SQLite (the
embedded default) keeps 0003's row trigger: it has no statement triggers.

Upgrading takes an ACCESS EXCLUSIVE lock on ``decisions_traceevent`` (DROP TRIGGER) for a moment;
nothing is rewritten (docs/operations.md). The row trigger's function, ``tracemem_trace_event_insert``,
stays for the way back.
"""

from django.db import migrations

from tracemem_core.migration_ops import VendorSQL, enable_always, pin_search_path

TERMINAL = "('committed', 'aborted')"
GENESIS = "0" * 64

# The head of decision ``current_id`` moved once, to the last event of the statement checked for it.
_MOVE_HEAD = """
        IF closing_status IS NULL THEN
            UPDATE decisions_decision SET event_count = next_seq - 1, trace_head = head
                WHERE decision_id = current_id;
        ELSE
            UPDATE decisions_decision
                SET event_count = next_seq - 1, trace_head = head, status = closing_status, closed_at = closing_at
                WHERE decision_id = current_id;
        END IF;"""

STATEMENT_FUNCTION = f"""
CREATE FUNCTION tracemem_trace_events_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e record;
    d record;
    current_id text;
    next_seq integer;
    head text;
    closing_status text;
    closing_at timestamp with time zone;
BEGIN
    FOR e IN SELECT decision_id, event_id, seq, type, payload, prev_hash, hash, "timestamp"
               FROM new_events ORDER BY decision_id, seq LOOP
        IF current_id IS DISTINCT FROM e.decision_id THEN
            IF current_id IS NOT NULL THEN{_MOVE_HEAD}
            END IF;
            current_id := e.decision_id;
            SELECT status, event_count, trace_head INTO d
                FROM decisions_decision WHERE decision_id = current_id FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'tracemem: event % names no decision', e.event_id;
            END IF;
            IF d.status IN {TERMINAL} THEN
                RAISE EXCEPTION 'tracemem: decision % is closed (%): its trace takes no more events', current_id, d.status;
            END IF;
            next_seq := d.event_count + 1;
            head := CASE WHEN d.event_count = 0 THEN '{GENESIS}' ELSE d.trace_head END;
            closing_status := NULL;
            closing_at := NULL;
        ELSIF closing_status IS NOT NULL THEN
            RAISE EXCEPTION 'tracemem: decision % is closed (%): its trace takes no more events', current_id, closing_status;
        END IF;
        IF e.seq <> next_seq OR e.prev_hash <> head THEN
            RAISE EXCEPTION 'tracemem: event seq % does not continue the trace of decision % (the next seq is %, its prev_hash the trace_head)',
                e.seq, current_id, next_seq;
        END IF;
        IF e.type = 'close' THEN
            closing_status := CASE e.payload->>'action' WHEN 'commit' THEN 'committed' WHEN 'abort' THEN 'aborted' END;
            IF closing_status IS NULL OR closing_status IS DISTINCT FROM e.payload->>'status' THEN
                RAISE EXCEPTION 'tracemem: a close event carries action commit and status committed, or abort and aborted';
            END IF;
            closing_at := e."timestamp";
        ELSIF e.type = 'record' THEN
            closing_status := 'committed';
            closing_at := e."timestamp";
        END IF;
        next_seq := e.seq + 1;
        head := e.hash;
    END LOOP;
    IF current_id IS NOT NULL THEN{_MOVE_HEAD}
    END IF;
    RETURN NULL;
END
$$"""

FORWARDS = [
    STATEMENT_FUNCTION,
    *pin_search_path("tracemem_trace_events_insert"),
    "DROP TRIGGER tracemem_trace_event_chain ON decisions_traceevent",
    "CREATE TRIGGER tracemem_trace_event_chain AFTER INSERT ON decisions_traceevent "
    "REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION tracemem_trace_events_insert()",
    *enable_always("decisions_traceevent", "tracemem_trace_event_chain"),
]

BACKWARDS = [
    "DROP TRIGGER tracemem_trace_event_chain ON decisions_traceevent",
    "CREATE TRIGGER tracemem_trace_event_chain AFTER INSERT ON decisions_traceevent "
    "FOR EACH ROW EXECUTE FUNCTION tracemem_trace_event_insert()",
    *enable_always("decisions_traceevent", "tracemem_trace_event_chain"),
    "DROP FUNCTION tracemem_trace_events_insert()",
]


class Migration(migrations.Migration):
    dependencies = [("decisions", "0008_traceevent_event_json")]

    operations = [VendorSQL(forwards={"postgresql": FORWARDS}, backwards={"postgresql": BACKWARDS})]
