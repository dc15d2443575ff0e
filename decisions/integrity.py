"""Does a decision's row agree with its trace and its receipt? (``manage.py verify_traces``)

The database refuses the app role every edit that could make them disagree (migration decisions
0003); what it cannot refuse is the PostgreSQL superuser, or the file of the embedded SQLite
database. This finds what such an edit leaves behind: a broken hash chain, a row whose
``event_count``/``trace_head`` or status disagree with the trace, a closed decision without its
stored receipt, a receipt that no longer matches the row or the trace (a trace shorter than the
receipt says, a close event saying something else) or whose signature fails, a decision
record's row saying something its record event does not, and (PostgreSQL) an event whose stored
JSON text, which trace reads serve (migration decisions 0008), says something its columns do not.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.db.models.expressions import RawSQL

from decisions import selectors
from decisions.models import TERMINAL_STATUSES, Decision, DecisionRecord, Receipt, ReceiptKey, TraceEvent
from decisions.receipts import receipt_data_of, receipt_key_out, receipt_out
from decisions.selectors import event_as_dict
from tracemem_core.errors import NotFound
from tracemem_verify.chain import ChainVerifier
from tracemem_verify.receipt import closing_of, verify_receipt, verify_trace_end


def receipt_keys() -> list[dict[str, Any]]:
    """Every receipt key the server ever published (what receipts are checked against here)."""
    return [receipt_key_out(row) for row in ReceiptKey.objects.all()]


def decision_problems(decision: Decision, keys: list[dict[str, Any]] | None = None) -> list[str]:
    """Every disagreement between the decision's row, its trace and its receipt (none: intact).

    The one integrity check: ``manage.py verify_traces`` runs it on every decision and the decision
    page's badge on one. It reads every stored event (also any beyond the row's ``event_count``),
    one page at a time, so a long trace is never held whole.
    """
    verifier = ChainVerifier(decision.decision_id)
    last: dict[str, Any] | None = None
    stored = TraceEvent.objects.filter(decision=decision).order_by("seq")
    # On PostgreSQL trace reads serve each event's stored JSON text (``event_json``, migration 0008):
    # it must say what the columns the chain is checked on say.
    served = connection.vendor == "postgresql"
    if served:
        stored = stored.annotate(served_json=RawSQL('"decisions_traceevent"."event_json"', []))
    for event in stored.iterator(chunk_size=selectors.TRACE_PAGE_MAX):
        last = event_as_dict(event)
        broken = verifier.feed([last])
        if broken is not None:
            return [f"broken at seq {broken.seq}: {broken.reason}"]
        if served and _served_differs(getattr(event, "served_json", None), last):
            return [f"event seq {event.seq}: the JSON trace reads serve disagrees with its stored columns"]
    problems = []
    count, head = verifier.count, last["hash"] if last is not None else ""
    if (count, head) != (decision.event_count, decision.trace_head):
        problems.append(
            f"its row says {decision.event_count} events ending at {decision.trace_head[:12] or '-'}… but its trace "
            f"has {count} ending at {head[:12] or '-'}…"
        )
    closing = closing_of(last) if last is not None else None
    if decision.status in TERMINAL_STATUSES:
        if closing is None:
            problems.append(f"its row says {decision.status} but its trace has no close event")
        elif closing[0] != decision.status:
            problems.append(
                f"its row says {decision.status} but its close event (seq {count}) says {closing[0]} "
                f"(action {closing[1]})"
            )
    elif closing is not None:
        problems.append(f"its row says {decision.status} but its trace ends with a close event")
    problems += _record_problems(decision, last, count)
    receipt = Receipt.objects.filter(decision=decision).first()
    if receipt is None:
        if decision.status in TERMINAL_STATUSES:
            problems.append("it is closed but has no stored receipt")
        return problems
    signed = receipt.receipt_data
    row = receipt_data_of(decision, signed.get("close_action", ""))
    for name, value in signed.items():
        if name != "close_action" and row.get(name) != value:
            problems.append(f"its receipt says {name} {value!r} but its row says {row.get(name)!r}")
    for verdict in (
        verify_receipt(receipt_out(receipt), receipt_keys() if keys is None else keys),
        verify_trace_end(signed, count, last),
    ):
        if not verdict.ok:
            problems.append(f"its receipt: {verdict.message}")
    return problems


# A record row's columns and the record event's payload keys that carry the same value.
_RECORD_FIELDS = (
    ("title", "title"),
    ("category", "category"),
    ("tags", "tags"),
    ("context", "context"),
    ("decision_text", "decision"),
    ("rationale", "rationale"),
    ("alternatives_considered", "alternatives_considered"),
    ("constraints", "constraints"),
    ("consequences", "consequences"),
    ("supersedes_id", "supersedes"),
)


def _served_differs(text: str | None, event: dict[str, Any]) -> bool:
    return text is None or json.loads(text) != json.loads(json.dumps(event))


def _record_problems(decision: Decision, last: dict[str, Any] | None, count: int) -> list[str]:
    """A decision record's row against its one ``record`` event (what search and the pages show
    against what the chain and the receipt pin)."""
    record = DecisionRecord.objects.filter(decision=decision).first()
    if record is None:
        return []
    if last is None or last.get("type") != "record":
        return ["it has a record row but its trace does not end with a record event"]
    payload = last.get("payload") or {}
    problems = [
        f"its record row says {column.removesuffix('_id').removesuffix('_text')} {getattr(record, column)!r} "
        f"but its record event (seq {count}) says {payload.get(key)!r}"
        for column, key in _RECORD_FIELDS
        if getattr(record, column) != payload.get(key)
    ]
    if record.tags_text != " ".join(record.tags or []):
        problems.append(f"its record row's tags_text {record.tags_text!r} is not its tags {record.tags!r}")
    return problems


def decisions_verify(*, decision_id: str | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Check every decision (or one); returns (how many checked, [(decision_id, problem)])."""
    decisions = Decision.objects.all().order_by("created_at")
    if decision_id is not None:
        decisions = decisions.filter(pk=decision_id)
        if not decisions.exists():
            raise NotFound(f"decision {decision_id} was not found")
    keys = receipt_keys()
    found = [
        (decision.decision_id, problem)
        for decision in decisions.iterator()
        for problem in decision_problems(decision, keys)
    ]
    return decisions.count(), found
