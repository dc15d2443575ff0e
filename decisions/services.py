"""Decision envelopes and their trace: every state change of docs/contract/tools.md (envelope) and docs/contract/states.md.

Other apps change a decision only through the functions here: they lock it with
:func:`decision_lock`, append with :func:`trace_append`, ask the gates (:func:`ensure_writable`,
:func:`ensure_committable`) and report gating facts (:func:`note_policy_outcome`,
:func:`note_approval_requested`, :func:`note_approval_resolved`, :func:`note_approval_cancelled`).
Apps that keep state hanging off an open decision (approvals) register a close participant with
:func:`register_close_participant`; :func:`decision_close` calls it inside its transaction.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from agents.models import Agent
from decisions.models import (
    TERMINAL_STATUSES,
    ApprovalStatus,
    AutomationMode,
    Decision,
    DecisionStatus,
    EventType,
    TraceEvent,
)
from decisions.receipts import receipt_issue
from decisions.selectors import (
    LockJoin,
    Unchanged,
    approval_outcome_fields,
    decision_for_update,
    decision_for_update_joined,
    decision_versioned,
    event_as_dict,
    may_read_versioned,
)
from tracemem_core import metrics, outage, telemetry
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    ApprovalRequired,
    InvalidArgument,
    InvalidState,
    PermissionDenied,
    PolicyDenied,
)
from tracemem_core.ids import EVENT_PREFIX, new_id
from tracemem_core.postgresql import prepared_cursor
from tracemem_core.redaction import redact, redact_strings
from tracemem_verify.chain import GENESIS_HASH, event_hash

INTENT_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+){1,7}$")
CLOSE_ACTIONS = ("commit", "abort")
_CLOSE_ALIASES = {"rollback": "abort"}


# --- the trace ------------------------------------------------------------------------------


def trace_append(
    *, decision: Decision, type: str, actor: Actor, payload: dict[str, Any], timestamp: datetime | None = None
) -> TraceEvent:
    """Append one event to a decision's hash chain.

    The caller holds the decision's row lock (:func:`decision_lock`) inside its transaction, which
    is what keeps ``seq`` gapless and the chain linear under concurrency. ``payload`` must already
    be redacted (the value patterns run over it once more); it is normalised through JSON so the hash covers exactly what is stored.

    The database checks that the event continues the chain of a decision that is not closed and
    advances the decision's ``event_count``/``trace_head`` itself (one INSERT, no UPDATE round
    trip; migration decisions 0003); the same values are mirrored on ``decision`` here.
    """
    (event,) = trace_append_many(
        decision=decision, type=type, actor=actor, payloads=[payload], timestamp=timestamp
    )
    return event


def trace_append_many(
    *,
    decision: Decision,
    type: str,
    actor: Actor,
    payloads: list[dict[str, Any]],
    timestamp: datetime | None = None,
) -> list[TraceEvent]:
    """Append events to a decision's chain in one INSERT, each chained to the one before (as
    :func:`trace_append` would one by one; the database checks and advances the head per row)."""
    events = _chained(decision, type, actor, payloads, timestamp)
    _insert_events(events)
    decision.event_count = events[-1].seq
    decision.trace_head = events[-1].hash
    return events


def _chained(
    decision: Decision, type: str, actor: Actor, payloads: list[dict[str, Any]], timestamp: datetime | None
) -> list[TraceEvent]:
    """The events of ``payloads`` continuing ``decision``'s chain, hashed, not yet stored."""
    actor_json = actor.as_trace()
    events: list[TraceEvent] = []
    seq, head = decision.event_count, decision.trace_head or GENESIS_HASH
    for payload in payloads:
        seq += 1
        event = TraceEvent(  # by ids: assigning the relation through its descriptor cost more than the rest
            event_id=new_id(EVENT_PREFIX),
            decision_id=decision.decision_id,
            seq=seq,
            type=type,
            timestamp=timestamp or timezone.now(),
            actor=actor_json,
            payload=json.loads(json.dumps(redact_strings(payload))),
            prev_hash=head,
        )
        event.hash = head = event_hash(event_as_dict(event))
        _DECISION_OF_EVENT.set_cached_value(event, decision)  # event.decision, as assigned
        events.append(event)
    return events


_DECISION_OF_EVENT = TraceEvent._meta.get_field("decision")
_AGENT_OF_DECISION = Decision._meta.get_field("agent")


_INSERT_INTO = (
    'INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, "timestamp", actor, payload, '
    "prev_hash, hash)"
)
_INSERT_SQL = _INSERT_INTO + " VALUES "
_INSERT_VALUES = "%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s"
_INSERT_ROW = f"({_INSERT_VALUES})"
_INSERT_ONE_SQL = _INSERT_SQL + _INSERT_ROW


def _event_params(e: TraceEvent) -> list[Any]:
    return [
        e.event_id,
        e.decision_id,
        e.seq,
        str(e.type),  # the value of an EventType member
        e.timestamp,
        json.dumps(e.actor),
        json.dumps(e.payload),
        e.prev_hash,
        e.hash,
    ]


def _stored(*instances: models.Model) -> None:
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


def _insert_events(events: list[TraceEvent]) -> None:
    """One INSERT for all ``events``; in plain SQL on PostgreSQL, where the ORM's statement building
    cost more CPU than the statement (issue 17)."""
    if connection.vendor != "postgresql":
        if len(events) == 1:
            events[0].save(force_insert=True)
        else:
            TraceEvent.objects.bulk_create(events)
        return
    params: list[Any] = []
    for e in events:
        params += _event_params(e)
    if len(events) == 1:  # one fixed statement, prepared; a batch's text depends on its length
        with prepared_cursor() as cursor:
            cursor.execute(_INSERT_ONE_SQL, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL + ", ".join([_INSERT_ROW] * len(events)), params)
    _stored(*events)


# --- appending without a lock (PostgreSQL; issue 17, docs/performance.md §29) ------------------------
#
# The decision is read without a lock, with its row's version (xmin: the transaction that wrote the
# row; any update of it, by anyone, changes it); the events are built and hashed on that head; ONE
# statement, run outside any transaction so that it commits by itself, locks the row only if it is
# still that version and inserts the events only then. No BEGIN, no COMMIT: two round trips instead of
# four. Under READ COMMITTED a lock that had to wait re-checks the WHERE on the row's newest version,
# so a row changed meanwhile (an append, a close, an approval) inserts nothing, and the caller takes
# the locked path of before. The chain trigger (migration decisions 0003) still checks every event.

APPEND_UNCHANGED = Unchanged()  # an append: only the row itself, waiting for it if it is held


@functools.cache
def _unchanged_guard(unchanged: Unchanged) -> str:
    condition = f" AND {unchanged.condition}" if unchanged.condition else ""
    lock = "FOR UPDATE" if unchanged.wait else "FOR UPDATE SKIP LOCKED"
    return (
        "WITH unchanged AS (SELECT 1 FROM decisions_decision AS d WHERE d.decision_id = %s AND d.agent_id = %s "
        f"AND d.xmin = %s::xid{condition} {lock}) "
    )


@functools.cache
def _unchanged_insert_one_sql(unchanged: Unchanged) -> str:
    # INSERT … SELECT gives its parameters the target columns' types, as VALUES does.
    return f"{_unchanged_guard(unchanged)}{_INSERT_INTO} SELECT {_INSERT_VALUES} FROM unchanged"


def _unchanged_insert_many_sql(unchanged: Unchanged, count: int) -> str:
    # The rows in their order (a VALUES list scanned as written; the trigger checks them in order).
    rows = ", ".join([_INSERT_ROW] * count)
    return (
        f"{_unchanged_guard(unchanged)}{_INSERT_INTO} SELECT * FROM (VALUES {rows}) AS e "
        "WHERE EXISTS (SELECT FROM unchanged)"
    )


def may_append_unlocked(actor: Actor) -> bool:
    """Whether :func:`append_unchanged` may be tried for ``actor``'s call: PostgreSQL, an agent, and no
    transaction open (inside a caller's transaction its statement would not commit by itself; the
    locked path keeps the caller's all-or-nothing)."""
    return may_read_versioned(actor) and connection.get_autocommit() and not connection.in_atomic_block


def decision_read_unlocked(
    *, actor: Actor, decision_id: Any, join: LockJoin | None = None, params: list[Any] | None = None
) -> tuple[Decision, str, list[Any]] | None:
    """The agent's decision without a lock, its row's version and ``join``'s values (one statement:
    ``decisions.selectors.decision_versioned``), for :func:`append_unchanged`; None where the call
    must take the locked path: the decision awaits an approval (the lock's settlers expire one past its
    deadline). Refuses as :func:`decision_lock` does: the same NotFound."""
    decision_id = v.string(decision_id, "decision_id", max_length=40)
    with outage.closing_if_lost():
        decision, version, values = decision_versioned(actor, decision_id, join, params)
    telemetry.annotate(decision_id=decision.decision_id, agent_id=decision.agent_id)
    if decision.status == DecisionStatus.NEEDS_APPROVAL:
        return None
    return decision, version, values


def append_unchanged(
    *,
    decision: Decision,
    version: str,
    type: str,
    actor: Actor,
    payloads: list[dict[str, Any]],
    unchanged: Unchanged = APPEND_UNCHANGED,
    params: list[Any] | None = None,
) -> list[TraceEvent] | None:
    """:func:`trace_append_many` for a decision read without a lock (:func:`decision_read_unlocked`),
    in one statement that commits by itself and inserts only if the decision's row is still
    ``version`` and ``unchanged``'s condition (its ``params``) holds; None when it inserted nothing
    (the caller takes the locked path). A connection lost during the statement is ``applied:
    "unknown"`` (``outage.committing_statement``). Call only where :func:`may_append_unlocked`."""
    events = _chained(decision, type, actor, payloads, None)
    values: list[Any] = [decision.decision_id, decision.agent_id, version, *(params or ())]
    for e in events:
        values += _event_params(e)
    if len(events) == 1:  # one fixed statement, prepared; a batch's text depends on its length
        sql, cursor = _unchanged_insert_one_sql(unchanged), prepared_cursor()
    else:
        sql, cursor = _unchanged_insert_many_sql(unchanged, len(events)), connection.cursor()
    with cursor, outage.committing_statement() as statement:
        cursor.execute(sql, values)
        statement.wrote = cursor.rowcount > 0
    if not statement.wrote:
        return None
    _stored(*events)
    decision.event_count = events[-1].seq
    decision.trace_head = events[-1].hash
    return events


_DECISION_FIELDS = list(Decision._meta.concrete_fields)
_INSERT_DECISION_SQL = "INSERT INTO decisions_decision ({}) VALUES ({})".format(
    ", ".join(f'"{f.column}"' for f in _DECISION_FIELDS),
    ", ".join("%s::jsonb" if isinstance(f, models.JSONField) else "%s" for f in _DECISION_FIELDS),
)


def _column_value(field: models.Field[Any, Any], value: Any) -> Any:
    if isinstance(field, models.JSONField):
        return json.dumps(value)
    return value.value if isinstance(value, Enum) else value  # a choices member: its value


def _decision_values(decision: Decision) -> list[Any]:
    return [_column_value(f, getattr(decision, f.attname)) for f in _DECISION_FIELDS]


# decision_create on PostgreSQL: the decision's row and its ``created`` event in one statement. The
# event's trigger (migration decisions 0003) runs at the end of the statement, so it sees the row
# inserted by the statement's WITH, checks the event starts its chain and advances the row. Run
# outside a transaction, the statement commits by itself: no BEGIN and COMMIT round trips.
_INSERT_CREATED_SQL = f"WITH decision AS ({_INSERT_DECISION_SQL}) {_INSERT_ONE_SQL}"


def _insert_decision(decision: Decision, created: TraceEvent) -> None:
    """The decision's row and its ``created`` event. On PostgreSQL one plain INSERT (building the row
    with the ORM cost a quarter of ``decision_create``'s CPU, and the two INSERTs and the BEGIN and
    COMMIT around them were four round trips: issue 17, docs/performance.md); every concrete field,
    so a field added to the model is written too. All or nothing: one statement, in the caller's
    transaction if one is open, else committed by itself. Elsewhere (SQLite) the ORM's ``save`` and
    the event's insert, in a transaction."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            decision.save(force_insert=True)
            _insert_events([created])
        return
    # Outside a transaction the statement is its own commit: the outage answer must say so. Inside a
    # caller's, a savepoint (as ``@transaction.atomic`` made before): a failure leaves the caller's
    # transaction usable.
    committing = transaction.atomic() if connection.in_atomic_block else outage.committing_statement()
    with prepared_cursor() as cursor, committing:
        cursor.execute(_INSERT_CREATED_SQL, _decision_values(decision) + _event_params(created))
    _stored(decision, created)


def decision_lock(*, actor: Actor, decision_id: Any, settle: bool = True) -> Decision:
    """Fetch a decision the actor may see, locked for update. Call inside ``transaction.atomic``.

    With ``settle`` (the default), a pending approval whose deadline has passed is expired first
    (by the registered settlers), so every call on the decision sees what ``decision_get`` already
    reports. The approvals services that resolve approvals themselves pass ``settle=False``.
    """
    decision_id = v.string(decision_id, "decision_id", max_length=40)
    return _settled(decision_for_update(actor, decision_id), settle)


def decision_lock_with(
    *, actor: Actor, decision_id: Any, join: LockJoin, params: list[Any]
) -> tuple[Decision, list[Any] | None]:
    """:func:`decision_lock`, and the values of ``join``'s columns read by the same statement (one
    round trip: ``decisions.selectors.LockJoin``); None instead of the values where the lock is not
    that plain statement (not an agent, not PostgreSQL) or it could not lock the row at once (taken
    by another transaction, or not found): the lock waits then, and the caller reads them itself."""
    decision_id = v.string(decision_id, "decision_id", max_length=40)
    joined = decision_for_update_joined(actor, decision_id, join, params)
    if joined is None:
        return _settled(decision_for_update(actor, decision_id), True), None
    decision, values = joined
    return _settled(decision, True), values


def _settled(decision: Decision, settle: bool) -> Decision:
    telemetry.annotate(decision_id=decision.decision_id, agent_id=decision.agent_id)
    if settle and decision.status == DecisionStatus.NEEDS_APPROVAL:
        for settler in _lock_settlers:
            settler(decision=decision)
    return decision


# Apps that keep deadlines on an open decision (approvals) settle them here, with the decision
# locked, before the caller acts on it; registered from their AppConfig.ready().
LockSettler = Callable[..., None]
_lock_settlers: list[LockSettler] = []


def register_lock_settler(settler: LockSettler) -> None:
    """Call ``settler(decision=)`` whenever :func:`decision_lock` locks a decision awaiting approval."""
    if settler not in _lock_settlers:
        _lock_settlers.append(settler)


# --- gates (docs/contract/states.md), in one place ----------------------------------------------------------


def _granted_after(decision: Decision, seq: int | None) -> bool:
    return seq is None or (decision.last_grant_seq is not None and decision.last_grant_seq > seq)


def ensure_not_terminal(decision: Decision, what: str) -> None:
    if decision.status in TERMINAL_STATUSES:
        raise InvalidState(
            f"decision {decision.decision_id} is {decision.status}: a closed decision cannot {what}; "
            "create a new decision"
        )


def write_block_reason(decision: Decision) -> tuple[type[Exception], str] | None:
    """Why a write would be refused right now, or None. Shared by the write gate and decision_get."""
    did = decision.decision_id
    if decision.status == DecisionStatus.NEEDS_APPROVAL:
        return InvalidState, (
            f"decision {did} is needs_approval: writes wait for an approver; call decision_wait"
        )
    if decision.status == DecisionStatus.REJECTED:
        return InvalidState, f"decision {did} was rejected: no writes; close it with action=abort"
    if decision.last_deny_seq is not None:
        lifted = decision.automation_mode == AutomationMode.OVERRIDE and _granted_after(
            decision, decision.last_deny_seq
        )
        if not lifted:
            return PolicyDenied, (
                f"a policy denied this decision (event #{decision.last_deny_seq}); writes are blocked for the rest "
                "of it; close it with action=abort"
            )
    if not _granted_after(decision, decision.last_exception_seq):
        return ApprovalRequired, (
            f"a policy requires an exception approval (event #{decision.last_exception_seq}); call "
            "decision_request_approval, then decision_wait until approval_status is approved"
        )
    if decision.automation_mode in (AutomationMode.PROPOSE, AutomationMode.APPROVE, AutomationMode.OVERRIDE):
        if decision.last_grant_seq is None:
            return ApprovalRequired, (
                f"automation_mode {decision.automation_mode} needs a granted approval before writes; call "
                "decision_request_approval, then decision_wait until approval_status is approved"
            )
    return None


def ensure_writable(decision: Decision) -> None:
    """The write gate: raise the refusal of docs/contract/states.md if a write may not happen now."""
    ensure_not_terminal(decision, "be written to")
    blocked = write_block_reason(decision)
    if blocked is not None:
        error, message = blocked
        raise error(message)


def commit_block_reason(decision: Decision) -> tuple[type[Exception], str] | None:
    did = decision.decision_id
    if decision.status == DecisionStatus.REJECTED:
        return (
            InvalidState,
            f"decision {did} was rejected: it cannot be committed; close it with action=abort",
        )
    if decision.status == DecisionStatus.NEEDS_APPROVAL:
        return InvalidState, (
            f"decision {did} is needs_approval: commit waits for an approver; call decision_wait, or abort"
        )
    if decision.automation_mode == AutomationMode.PROPOSE and decision.last_grant_seq is None:
        return ApprovalRequired, (
            "automation_mode propose needs a granted approval before commit; call decision_request_approval, "
            "then decision_wait"
        )
    if not _granted_after(decision, decision.last_exception_seq):
        return ApprovalRequired, (
            f"a policy requires an exception approval (event #{decision.last_exception_seq}) before commit; call "
            "decision_request_approval, then decision_wait"
        )
    return None


def ensure_committable(decision: Decision) -> None:
    ensure_not_terminal(decision, "change")
    blocked = commit_block_reason(decision)
    if blocked is not None:
        error, message = blocked
        raise error(message)


def approval_required(decision: Decision) -> bool:
    """True when a write or commit would be refused until a human grants an approval."""
    if decision.is_terminal:
        return False
    if decision.status == DecisionStatus.NEEDS_APPROVAL:
        return True
    blocked = write_block_reason(decision)
    return blocked is not None and blocked[0] is ApprovalRequired


# --- gating facts reported by policies and approvals -----------------------------------------


def note_policy_outcome(
    *, decision: Decision, outcome: str, seq: int, exception_route_id: str | None
) -> None:
    """Remember a policy outcome that gates later writes (``deny``, ``requires_exception``)."""
    fields: dict[str, Any] = {}
    if outcome == "deny":
        fields["last_deny_seq"] = seq
    elif outcome == "requires_exception":
        fields["last_exception_seq"] = seq
        fields["exception_route_id"] = exception_route_id
    if fields:
        for name, value in fields.items():
            setattr(decision, name, value)
        Decision.objects.filter(pk=decision.pk).update(**fields)


def note_approval_requested(*, decision: Decision, approval_id: str) -> None:
    """open/approved → needs_approval (docs/contract/states.md); the caller appends the approval_requested event."""
    if decision.status not in (DecisionStatus.OPEN, DecisionStatus.APPROVED):
        raise InvalidState(
            f"decision {decision.decision_id} is {decision.status}: approval can be requested only when it is "
            "open or approved"
        )
    _set(
        decision,
        status=DecisionStatus.NEEDS_APPROVAL,
        approval_status=ApprovalStatus.PENDING,
        pending_approval_id=approval_id,
    )


def note_approval_resolved(*, decision: Decision, outcome: str, seq: int) -> None:
    """needs_approval → approved | rejected; ``outcome`` is approved, rejected or expired."""
    if decision.status != DecisionStatus.NEEDS_APPROVAL:
        raise InvalidState(f"decision {decision.decision_id} is {decision.status}, not needs_approval")
    _set(decision, **approval_outcome_fields(outcome, seq))


def note_approval_cancelled(*, decision: Decision, approval_id: str) -> None:
    """The pending approval was cancelled because the decision is closing: nothing is pending any more.

    ``approval_status`` goes back to null (the contract's enum has no ``cancelled``); the caller appends the
    ``approval_resolved`` event and :func:`decision_close` sets the terminal status.
    """
    if decision.pending_approval_id not in (None, approval_id):
        raise InvalidState(
            f"decision {decision.decision_id} is waiting for approval {decision.pending_approval_id}, "
            f"not {approval_id}"
        )
    _set(decision, approval_status=None, pending_approval_id=None)


def _set(decision: Decision, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(decision, name, value)
    Decision.objects.filter(pk=decision.pk).update(**fields)
    if "status" in fields:
        _count_status(str(fields["status"]))


def _count_status(status: str) -> None:
    metrics.on_commit(lambda: metrics.DECISIONS.labels(status).inc())


# --- close participants -----------------------------------------------------------------------

# Apps that depend on decisions (approvals) must settle what they keep open on a decision when it
# closes, in the same transaction, without decisions importing them. They register here from their
# AppConfig.ready(), like policies' register_read_records_resolver.
# A participant gets the locked decision (still in its pre-close status), the closing actor and the
# new terminal status; it may append trace events, which then precede the ``close`` event.
CloseParticipant = Callable[..., None]
_close_participants: list[CloseParticipant] = []


def register_close_participant(participant: CloseParticipant) -> None:
    """Call ``participant(decision=, actor=, new_status=)`` inside every :func:`decision_close`."""
    if participant not in _close_participants:
        _close_participants.append(participant)


# --- the envelope tools ------------------------------------------------------------------------


def _require_agent(actor: Actor) -> Agent:
    if actor.kind != "agent" or actor.agent is None:
        raise PermissionDenied("only an agent (authenticated with its key) can do this")
    return actor.agent


def validate_intent(intent: Any, field: str = "intent") -> str:
    value = v.string(intent, field, max_length=200)
    if not INTENT_RE.fullmatch(value):
        raise InvalidArgument(
            f"{field} must be dotted lowercase domain.entity.action: 2 to 8 segments of [a-z0-9_], "
            f"e.g. code.refactor.execute; got {value!r}",
            field=field,
        )
    return value


def decision_create(
    *,
    actor: Actor,
    intent: Any,
    automation_mode: Any,
    decision_actor: Any = None,
    instance: Any = None,
    version: Any = None,
    metadata: Any = None,
) -> Decision:
    """Open a decision envelope for the calling agent; its first trace event is ``created``.

    The row and the event are stored together or not at all (:func:`_insert_decision`: one
    statement on PostgreSQL, without a transaction of its own)."""
    agent = _require_agent(actor)
    clean_intent = validate_intent(intent)
    mode = v.choice(automation_mode, "automation_mode", AutomationMode.values)
    # These labels are shown and hashed like metadata, so a pasted token is redacted here too.
    who = redact(v.optional_string(decision_actor, "actor"), field="actor") or agent.agent_id
    clean_metadata = redact(v.optional_json_object(metadata, "metadata") or {}, field="metadata")
    decision = Decision(
        agent_id=agent.agent_id,  # by id, and the agent cached below (as _chained does for events)
        intent=clean_intent,
        automation_mode=mode,
        actor=who,
        instance=redact(v.optional_string(instance, "instance"), field="instance"),
        version=redact(v.optional_string(version, "version", max_length=100), field="version"),
        metadata=clean_metadata,
    )
    _AGENT_OF_DECISION.set_cached_value(decision, agent)
    payload = {
        "intent": decision.intent,
        "automation_mode": decision.automation_mode,
        "actor": decision.actor,
        "instance": decision.instance,
        "version": decision.version,
        "metadata": clean_metadata,
    }
    (created,) = _chained(decision, EventType.CREATED, actor, [payload], None)
    _insert_decision(decision, created)  # the row as the trigger wants it: no events, no head yet
    decision.event_count, decision.trace_head = created.seq, created.hash
    telemetry.annotate(decision_id=decision.decision_id, agent_id=decision.agent_id)
    # After the insert: outside a transaction on_commit counts at once, and the row is committed.
    _count_status(DecisionStatus.OPEN)
    return decision


def decision_add_context(*, actor: Actor, decision_id: Any, context: Any, summary: Any = None) -> TraceEvent:
    """Record context (what the agent knows, why it acts) as a ``context`` event."""
    connection.ensure_connection()  # an outage first, as when this was @transaction.atomic
    clean_context = redact(v.json_object(context, "context", allow_empty=False), field="context")
    clean_summary = v.optional_string(summary, "summary", max_length=100_000)
    payload: dict[str, Any] = {"context": clean_context}
    if clean_summary is not None:
        payload["summary"] = redact(clean_summary, field="summary")  # a string: never refused
    (event,) = _append_context(actor, decision_id, [payload])
    return event


def _append_context(actor: Actor, decision_id: Any, payloads: list[dict[str, Any]]) -> list[TraceEvent]:
    """The ``context`` events of ``payloads``: without a lock when it can (two statements, no
    transaction: :func:`append_unchanged`), else, or when the decision changed in between, under the
    decision's lock as before."""
    if may_append_unlocked(actor):
        read = decision_read_unlocked(actor=actor, decision_id=decision_id)
        if read is not None:
            decision, version, _ = read
            ensure_not_terminal(decision, "take more context")  # closed stays closed: as under the lock
            events = append_unchanged(
                decision=decision, version=version, type=EventType.CONTEXT, actor=actor, payloads=payloads
            )
            if events is not None:
                return events
    return _append_context_locked(actor, decision_id, payloads)


@transaction.atomic
def _append_context_locked(
    actor: Actor, decision_id: Any, payloads: list[dict[str, Any]]
) -> list[TraceEvent]:
    decision = decision_lock(actor=actor, decision_id=decision_id)
    ensure_not_terminal(decision, "take more context")
    return trace_append_many(decision=decision, type=EventType.CONTEXT, actor=actor, payloads=payloads)


CONTEXTS_MAX = 100  # docs/contract/interfaces.md: a batch of context holds at most this many objects


def clean_contexts(contexts: Any) -> list[dict[str, Any]]:
    """``contexts`` of a batch ``decision_add_context``: 1 to 100 non-empty objects, each redacted."""
    v.required(contexts, "contexts")
    if not isinstance(contexts, list):
        raise InvalidArgument(
            f"contexts must be an array of 1 to {CONTEXTS_MAX} objects, got {type(contexts).__name__}",
            field="contexts",
        )
    if not 1 <= len(contexts) <= CONTEXTS_MAX:
        raise InvalidArgument(
            f"contexts must hold 1 to {CONTEXTS_MAX} objects, got {len(contexts)}; send more in further calls",
            field="contexts",
        )
    return [
        redact(v.json_object(item, f"contexts[{i}]", allow_empty=False), field=f"contexts[{i}]")
        for i, item in enumerate(contexts)
    ]


def decision_add_contexts(
    *, actor: Actor, decision_id: Any, contexts: Any, context: Any = None, summary: Any = None
) -> list[TraceEvent]:
    """Record several ``context`` events at once (batch context, docs/contract/interfaces.md): one lock, one multi-row
    insert, each event chained as if appended one by one. All or none are recorded.

    ``context`` and ``summary`` belong to the one-event form; sent with ``contexts`` they are refused
    (which one was meant cannot be guessed)."""
    connection.ensure_connection()  # an outage first, as when this was @transaction.atomic
    for name, value in (("context", context), ("summary", summary)):
        if value is not None:
            raise InvalidArgument(
                f"send either contexts (an array of objects) or context (one object, with an optional "
                f"summary), not both; put what {name} says inside the objects of contexts",
                field=name,
            )
    clean = clean_contexts(contexts)
    return _append_context(actor, decision_id, [{"context": context} for context in clean])


@transaction.atomic
def decision_close(
    *, actor: Actor, decision_id: Any, action: Any, summary: Any = None, reason: Any = None
) -> Decision:
    """Close a decision: ``commit`` (gated, docs/contract/states.md) or ``abort`` (always allowed while not terminal)."""
    if isinstance(action, str):
        action = _CLOSE_ALIASES.get(action, action)
    clean_action = v.choice(action, "action", CLOSE_ACTIONS)
    clean_summary = v.optional_string(summary, "summary", max_length=100_000)
    clean_reason = v.optional_string(reason, "reason", max_length=100_000)
    decision = decision_lock(actor=actor, decision_id=decision_id)
    if clean_action == "commit":
        ensure_committable(decision)
        new_status = DecisionStatus.COMMITTED
    else:
        ensure_not_terminal(decision, "change")
        new_status = DecisionStatus.ABORTED
    for participant in _close_participants:
        participant(decision=decision, actor=actor, new_status=new_status)
    close_event = trace_append(
        decision=decision,
        type=EventType.CLOSE,
        actor=actor,
        payload={
            "action": clean_action,
            "status": new_status,
            "summary": redact(clean_summary, field="summary"),
            "reason": redact(clean_reason, field="reason"),
        },
    )
    mark_closed(decision, close_event)
    receipt_issue(decision=decision, close_event=close_event)
    return decision


def mark_closed(decision: Decision, close_event: TraceEvent) -> None:
    """Mirror on ``decision`` what the database did when its ``close`` (or ``record``) event was
    inserted: the status the event carries and ``closed_at`` = the event's timestamp."""
    decision.status = (
        DecisionStatus.COMMITTED if close_event.type == EventType.RECORD else close_event.payload["status"]
    )
    decision.closed_at = close_event.timestamp
    status, seconds = str(decision.status), (decision.closed_at - decision.created_at).total_seconds()

    def count() -> None:
        metrics.DECISIONS.labels(status).inc()
        metrics.DECISION_SECONDS.labels(status).observe(max(0.0, seconds))

    metrics.on_commit(count)
