"""Reads of decisions and traces, with the actor's visibility applied.

An agent sees only its own decisions; anything else is ``not_found`` (never a 403 that would
confirm the decision exists). Users see decisions when they hold the ``decisions.view_decision``
permission (reviewers, auditors; superusers hold every permission).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import statistics
import time as monotonic_clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from psycopg.adapt import Loader

from agents.models import Agent
from decisions.models import TERMINAL_STATUSES, ApprovalStatus, Decision, DecisionStatus, TraceEvent
from tracemem_core import telemetry
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound, RateLimited
from tracemem_core.ids import DECISION_PREFIX, has_format
from tracemem_core.permissions import may_read
from tracemem_core.postgresql import prepared_cursor
from tracemem_core.rawjson import escape_line_separators
from tracemem_core.timefmt import iso_z
from tracemem_core.waits import Pending, TooManyWaits, wait_for

# decision_trace pages (docs/contract/interfaces.md): without ``limit`` a page holds TRACE_PAGE_DEFAULT events, never more
# than TRACE_PAGE_MAX. Whole-chain readers (verifiers) walk pages of TRACE_PAGE_MAX.
TRACE_PAGE_DEFAULT = 500
TRACE_PAGE_MAX = 1000


def decisions_visible_to(actor: Actor, queryset: QuerySet[Decision] | None = None) -> QuerySet[Decision]:
    qs = queryset if queryset is not None else Decision.objects.all()
    if actor.kind == "system":
        return qs
    if actor.kind == "agent" and actor.agent is not None:
        return qs.filter(agent_id=actor.agent.agent_id)
    if actor.kind == "user" and may_read(actor, "decisions"):
        return qs
    return qs.none()


def _check_decision_id(decision_id: str) -> None:
    if not has_format(decision_id, DECISION_PREFIX):
        # Not an id this server could have issued (also keeps NULs and odd bytes away from the database).
        raise NotFound(
            f"decision {decision_id[:60]!r} was not found; decision ids look like TMEM_ + 26 characters"
        )


def _not_found(decision_id: str) -> NotFound:
    return NotFound(f"decision {decision_id} was not found; check the id returned by decision_create")


def decision_for(actor: Actor, decision_id: str, queryset: QuerySet[Decision] | None = None) -> Decision:
    _check_decision_id(decision_id)
    if queryset is None and _plain_sql_for(actor):
        decision = _agent_decision(actor, decision_id, _READ_SQL)
    else:
        try:
            decision = decisions_visible_to(actor, queryset).get(pk=decision_id)
        except Decision.DoesNotExist:
            raise _not_found(decision_id) from None
    # Reads too (a decision, its trace, a wait) name the decision and its agent on the span.
    telemetry.annotate(decision_id=decision.decision_id, agent_id=decision.agent_id)
    return decision


# An agent's own decision in plain SQL: every agent call starts here, and building the ORM query
# cost more CPU than the query itself (issue 17, docs/performance.md sections 2 and 18).
_FIELDS = Decision._meta.concrete_fields
_COLUMNS = ", ".join('"%s"' % f.column for f in _FIELDS)  # noqa: UP031
_READ_SQL = f"SELECT {_COLUMNS} FROM decisions_decision WHERE decision_id = %s AND agent_id = %s"
_LOCK_SQL = f"{_READ_SQL} FOR UPDATE"
_CONVERTERS = [(i, f.from_db_value) for i, f in enumerate(_FIELDS) if hasattr(f, "from_db_value")]


def _plain_sql_for(actor: Actor) -> bool:
    return connection.vendor == "postgresql" and actor.kind == "agent" and actor.agent is not None


def _agent_decision(actor: Actor, decision_id: str, sql: str) -> Decision:
    """The row of ``decisions_visible_to(actor).get(pk=decision_id)`` for an agent (its own decisions
    only), read with ``sql``; the same NotFound for a missing id and another agent's decision."""
    assert actor.agent is not None
    with prepared_cursor() as cursor:
        cursor.execute(sql, [decision_id, actor.agent.agent_id])
        row = cursor.fetchone()
    if row is None:
        raise _not_found(decision_id)
    return _decision_from_row(list(row))


_ATTNAMES = [f.attname for f in _FIELDS]


def _decision_from_row(values: list[Any]) -> Decision:
    for index, convert in _CONVERTERS:
        values[index] = convert(values[index], None, connection)
    return Decision.from_db(connection.alias, _ATTNAMES, values)


# The same row without a lock, with its version: the transaction id that wrote it (``xmin``), which
# any later update of the row by anyone changes. decisions.services' compare-and-swap append inserts
# only while the row still has it (issue 17, docs/performance.md §29).
_READ_VERSIONED_SQL = (
    f"SELECT {_COLUMNS}, xmin::text FROM decisions_decision WHERE decision_id = %s AND agent_id = %s"
)


def may_read_versioned(actor: Actor) -> bool:
    """Whether :func:`decision_versioned` answers for ``actor``: an agent, on PostgreSQL."""
    return _plain_sql_for(actor)


def decision_versioned(
    actor: Actor, decision_id: str, join: LockJoin | None = None, params: list[Any] | None = None
) -> tuple[Decision, str, list[Any]]:
    """An agent's own decision read without a lock (autocommit: no transaction), with its row's
    version (``xmin`` as text) and the values of ``join``'s columns (``join.read_sql``: the lock's
    statement without the lock). The same NotFound as :func:`decision_for_update` for a missing id
    and another agent's decision. PostgreSQL and an agent only (:func:`may_read_versioned`)."""
    assert actor.agent is not None
    _check_decision_id(decision_id)
    sql = _READ_VERSIONED_SQL if join is None else join.read_sql
    with prepared_cursor() as cursor:
        cursor.execute(sql, [*(params or ()), decision_id, actor.agent.agent_id])
        row = cursor.fetchone()
    if row is None:
        raise _not_found(decision_id)
    width = len(_FIELDS)
    return _decision_from_row(list(row[:width])), row[width], list(row[width + 1 :])


def decision_for_update(actor: Actor, decision_id: str) -> Decision:
    """``decision_for(actor, decision_id, Decision.objects.select_for_update())``; in plain SQL for
    an agent on PostgreSQL. Call inside ``transaction.atomic``."""
    if not _plain_sql_for(actor):
        return decision_for(actor, decision_id, Decision.objects.select_for_update())
    _check_decision_id(decision_id)
    return _agent_decision(actor, decision_id, _LOCK_SQL)


@dataclass(frozen=True)
class LockJoin:
    """More columns read by the statement that locks an agent's decision, so what a call reads next
    costs no round trip of its own (decision_evaluate's grant and policy version, issue 17).
    ``columns`` is appended to the select list and ``joins`` to the FROM, where the decision is
    ``d``; their ``%s`` parameters come first, in the text's order. Built once (a module constant):
    its statement is prepared like the plain lock's. Only the decision's row is locked; the joined
    columns are read from the statement's snapshot, taken before the lock is granted, so the
    statement never waits for it (``SKIP LOCKED``): a decision another transaction holds is locked
    by :func:`decision_for_update` and the rest read after the wait (a grant revoked meanwhile is
    seen, as before the join)."""

    columns: str
    joins: str

    @functools.cached_property
    def sql(self) -> str:
        return f"{self._select(self.columns)} FOR UPDATE OF d SKIP LOCKED"

    @functools.cached_property
    def read_sql(self) -> str:
        """The same read without a lock, the row's version (``xmin``) before ``columns``
        (:func:`decision_versioned`)."""
        return self._select(f"d.xmin::text, {self.columns}")

    def _select(self, columns: str) -> str:
        selected = ", ".join(f'd."{f.column}"' for f in _FIELDS)
        return (
            f"SELECT {selected}, {columns} FROM decisions_decision AS d {self.joins} "
            "WHERE d.decision_id = %s AND d.agent_id = %s"
        )


@dataclass(frozen=True)
class Unchanged:
    """What an append without a lock (``decisions.services.append_unchanged``) checks in its one
    statement, besides the decision's row still being the version it read: ``condition``, SQL ANDed
    to the decision's WHERE (the decision is ``d``; its ``%s`` parameters come after the decision's),
    e.g. decision_evaluate's grant and published version. ``wait``: whether the statement waits for
    the decision's row when another transaction holds it (then READ COMMITTED re-checks the WHERE on
    the row's newest version, and a changed row inserts nothing); without it (``SKIP LOCKED``) a held
    row inserts nothing at once — for conditions on other tables, which are read from the statement's
    snapshot and would not be re-read after a wait. Built once (a module constant): its statement is
    prepared."""

    condition: str = ""
    wait: bool = True


def decision_for_update_joined(
    actor: Actor, decision_id: str, join: LockJoin, params: list[Any]
) -> tuple[Decision, list[Any]] | None:
    """:func:`decision_for_update` and the raw values of ``join``'s columns, in one statement; None
    where the lock is not plain SQL (not an agent, not PostgreSQL), or the statement found no row it
    could lock at once (another transaction holds it, or no such decision of the agent's): the
    caller locks with :func:`decision_for_update` (which waits, or says not found) and reads the
    rest itself."""
    if not _plain_sql_for(actor):
        return None
    _check_decision_id(decision_id)
    assert actor.agent is not None
    with prepared_cursor() as cursor:
        cursor.execute(join.sql, [*params, decision_id, actor.agent.agent_id])
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(_FIELDS)
    return _decision_from_row(list(row[:width])), list(row[width:])


def approval_outcome_fields(outcome: str, seq: int | None) -> dict[str, Any]:
    """What resolving the pending approval with ``outcome`` does to the decision row (docs/contract/states.md):
    granted → approved (``seq`` is the grant's event); rejected or expired → rejected (fail closed).
    ``note_approval_resolved`` writes these; :func:`decision_as_reported` shows them early."""
    if outcome == ApprovalStatus.APPROVED:
        return {
            "status": DecisionStatus.APPROVED,
            "approval_status": outcome,
            "pending_approval_id": None,
            "last_grant_seq": seq,
        }
    if outcome in (ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED):
        return {"status": DecisionStatus.REJECTED, "approval_status": outcome, "pending_approval_id": None}
    raise InvalidArgument(f"unknown approval outcome {outcome!r}", field="outcome")


# Whether a decision's pending approval is past its deadline. Decisions cannot import approvals
# (approvals imports decisions), so approvals registers its check here from AppConfig.ready().
OverdueCheck = Callable[[Decision, datetime], bool]
_overdue_checks: list[OverdueCheck] = []


def register_overdue_check(check: OverdueCheck) -> None:
    if check not in _overdue_checks:
        _overdue_checks.append(check)


def decision_as_reported(decision: Decision) -> Decision:
    """The decision as it stands *now*: once its pending approval's ``expires_at`` has passed, the
    approval is expired and the decision rejected (fail closed), exactly as the expiry will write
    it, even before the beat's tick (or the next call on the decision) has written anything."""
    if decision.status != DecisionStatus.NEEDS_APPROVAL:
        return decision
    now = timezone.now()
    if not any(check(decision, now) for check in _overdue_checks):
        return decision
    reported = copy.copy(decision)
    for name, value in approval_outcome_fields(ApprovalStatus.EXPIRED, None).items():
        setattr(reported, name, value)
    return reported


# When a decision's pending approval expires (decision_wait wakes then, to report the expiry on
# time). Approvals registers how to find it, like the overdue check above.
PendingDeadline = Callable[[Decision], datetime | None]
_pending_deadlines: list[PendingDeadline] = []


def register_pending_deadline(finder: PendingDeadline) -> None:
    if finder not in _pending_deadlines:
        _pending_deadlines.append(finder)


# The decision page's approvals card (issue 18): every approval of a decision the actor may see, with
# votes. Approvals registers the finder, like the checks above; without it the card is empty.
ApprovalsOf = Callable[[Actor, str], list[Any]]
_approvals_of: list[ApprovalsOf] = []


def register_approvals_of(finder: ApprovalsOf) -> None:
    if finder not in _approvals_of:
        _approvals_of.append(finder)


def decision_approvals(actor: Actor, decision_id: str) -> list[Any]:
    """The decision's approvals under the approvals app's visibility (the approvals card)."""
    return [approval for finder in _approvals_of for approval in finder(actor, decision_id)]


# --- decision_wait (docs/contract/interfaces.md) ----------------------------------------------------------------

WAIT_DEFAULT_SECONDS = 25
# Under the 60 s tool-call timeout common MCP clients use, with room for the answer to travel.
WAIT_MAX_SECONDS = 50


def wait_timeout(value: Any) -> float:
    """``timeout_seconds``: a number from 0 to 50 (default 25); REST sends it as text."""
    field = "timeout_seconds"
    if value is None or value == "":
        return float(WAIT_DEFAULT_SECONDS)
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,6}(\.[0-9]{1,6})?\s*", value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(
            f"{field} must be a number of seconds from 0 to {WAIT_MAX_SECONDS}; got {value!r}", field=field
        )
    if not 0 <= value <= WAIT_MAX_SECONDS:
        raise InvalidArgument(
            f"{field} must be a number of seconds from 0 to {WAIT_MAX_SECONDS}; got {value}: wait again "
            "after it returns with timed_out true",
            field=field,
        )
    return float(value)


@dataclass(frozen=True)
class WaitOutcome:
    decision: Decision  # as reported (an approval past its deadline is expired)
    timed_out: bool


def decision_wait_check(
    actor: Actor, decision_id: str, *, timeout_seconds: Any, deadline: float | None
) -> WaitOutcome | Pending:
    """One look for ``decision_wait``: the answer once nothing is pending on the decision (the
    approval was granted, rejected, expired or cancelled, or none was asked for), ``timed_out``
    once ``deadline`` (monotonic; ``None`` on the first look: now + ``timeout_seconds``) has
    passed, otherwise :class:`Pending` with when to look again by itself (the deadline, or the
    approval's expiry if sooner: an expiry is reported on time even before the tick writes it)."""
    timeout = wait_timeout(timeout_seconds)
    decision = decision_as_reported(decision_for(actor, decision_id))
    now = monotonic_clock.monotonic()
    if deadline is None:
        deadline = now + min(timeout, settings.TRACEMEM_WAIT_CAP_SECONDS)
    if decision.approval_status != ApprovalStatus.PENDING:
        return WaitOutcome(decision, timed_out=False)
    if now >= deadline:
        return WaitOutcome(decision, timed_out=True)
    wake_at = deadline
    for finder in _pending_deadlines:
        expires_at = finder(decision)
        if expires_at is not None:
            # A hair after the deadline, so the look that wakes for it sees it passed.
            wake_at = min(wake_at, now + (expires_at - timezone.now()).total_seconds() + 0.005)
    return Pending(wake_at=max(wake_at, now), deadline=deadline)


def decision_wait(actor: Actor, decision_id: str, *, timeout_seconds: Any) -> WaitOutcome:
    """``decision_wait`` (docs/contract/interfaces.md): :func:`decision_wait_check` until it answers, woken by the
    commit that changes the decision (``tracemem_core.waits``). Under the production server's front
    it raises ``waits.ParkRequest`` instead of blocking, when the door allows it."""
    limit = settings.TRACEMEM_WAIT_MAX_PER_AGENT
    try:
        return wait_for(
            decision_id,
            lambda deadline: decision_wait_check(
                actor, decision_id, timeout_seconds=timeout_seconds, deadline=deadline
            ),
            owner=actor.id,
            limit=limit,
        )
    except TooManyWaits:
        raise RateLimited(
            f"this agent already has {limit} decision_wait calls in progress; wait for one to "
            "return before starting another",
            retry_after=1,
            details={"limit": limit},
        ) from None


def decision_events(decision: Decision) -> QuerySet[TraceEvent]:
    return TraceEvent.objects.filter(decision=decision).order_by("seq")


def event_as_dict(event: TraceEvent) -> dict[str, Any]:
    """An event exactly as ``decision_trace`` returns it (and as its hash covers)."""
    return {
        "decision_id": event.decision_id,
        "event_id": event.event_id,
        "seq": event.seq,
        "type": event.type,
        "timestamp": iso_z(event.timestamp),
        "actor": event.actor,
        "payload": event.payload,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


@dataclass(frozen=True)
class TracePage:
    events: list[TraceEvent]
    next_after_seq: int | None  # pass it as after_seq for the next page; None on the last page


def trace_page(decision: Decision, *, after_seq: Any = None, limit: Any = None) -> TracePage:
    """Events with ``seq > after_seq``, at most ``limit``, up to the decision's head as read with it
    (an event appended meanwhile belongs to the next read, so a page never outruns ``trace_head``)."""
    after = v.bounded_int(after_seq, "after_seq", minimum=0, maximum=None, default=0)
    size = v.bounded_int(limit, "limit", minimum=1, maximum=TRACE_PAGE_MAX, default=TRACE_PAGE_DEFAULT)
    events = list(
        TraceEvent.objects.filter(decision=decision, seq__gt=after, seq__lte=decision.event_count).order_by(
            "seq"
        )[:size]
    )
    more = bool(events) and events[-1].seq < decision.event_count
    return TracePage(events=events, next_after_seq=events[-1].seq if more else None)


@dataclass(frozen=True)
class TraceDictPage:
    events: list[dict[str, Any]]  # each exactly as event_as_dict gives it
    next_after_seq: int | None


# A number of 19 digits or more: in JSON a number follows "[", ":" or "," (and maybe spaces), so
# digits inside a string (a hash, an id) rarely match; when they do, json just reads the page.
_LONG_NUMBER = re.compile(rb"[\[:,]\s*-?[0-9]{19}")


def _json_loads(text: bytes) -> Any:
    # orjson reads an integer beyond 64 bits as a float, json as an int: such text goes to json, so
    # both paths give the same values (jsonb writes 1e21 as 1000000000000000000000).
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    return orjson.loads(text)


def trace_page_dicts(decision: Decision, *, after_seq: Any = None, limit: Any = None) -> TraceDictPage:
    """:func:`trace_page` with each event as :func:`event_as_dict` gives it (the MCP door). On
    PostgreSQL, without a model object per event (issue 17: at 1,000 events, model instances and
    jsonb decoding were most of a trace read): :func:`trace_page_json`'s text parsed in one go."""
    raw = trace_page_json(decision, after_seq=after_seq, limit=limit)
    if raw is None:
        page = trace_page(decision, after_seq=after_seq, limit=limit)
        return TraceDictPage([event_as_dict(e) for e in page.events], page.next_after_seq)
    return TraceDictPage(events=_json_loads(raw.events_json), next_after_seq=raw.next_after_seq)


@dataclass(frozen=True)
class TraceJSONPage:
    events_json: bytes  # a JSON array of the events, each exactly as event_as_dict gives it
    next_after_seq: int | None


# The same page with its events as JSON text, passed through to the response without a Python
# object per event (issue 17, docs/performance.md section 4): parsing 1,000 payloads and writing them
# again was most of a trace read. PostgreSQL writes each event's text once, when the event is
# inserted (``event_json``, a generated column: migration 0008, docs/performance.md section 24; writing
# it on every read was most of the query): the fields in event_as_dict's order, strings through
# to_json (JSON's escapes), the timestamp as iso_z writes it, actor and payload as jsonb writes them
# — the text the model path parses (so the same values, keys in the same order; jsonb's spaces after
# ":" and "," are left in).
_TRACE_JSON_SQL = """
SELECT seq, event_json
  FROM decisions_traceevent
 WHERE decision_id = %s AND seq > %s AND seq <= %s
 ORDER BY seq
 LIMIT %s
"""


class _UTF8Bytes(Loader):
    """A text column as the bytes the server sent (UTF-8, the client encoding Django sets)."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


def trace_page_json(decision: Decision, *, after_seq: Any = None, limit: Any = None) -> TraceJSONPage | None:
    """:func:`trace_page` as JSON text written by PostgreSQL (U+2028/U+2029 escaped, as the
    REST renderer escapes them); None elsewhere (SQLite: use :func:`trace_page_dicts`)."""
    after = v.bounded_int(after_seq, "after_seq", minimum=0, maximum=None, default=0)
    size = v.bounded_int(limit, "limit", minimum=1, maximum=TRACE_PAGE_MAX, default=TRACE_PAGE_DEFAULT)
    if connection.vendor != "postgresql":
        return None
    with prepared_cursor() as cursor:
        adapters = getattr(cursor.cursor, "adapters", None)  # psycopg 3
        if adapters is not None:
            adapters.register_loader("text", _UTF8Bytes)  # this cursor only
        cursor.execute(_TRACE_JSON_SQL, [decision.decision_id, after, decision.event_count, size])
        rows = cursor.fetchall()
    # One text per row, joined here: string_agg(... ORDER BY seq) sorted the page again in
    # PostgreSQL 15 and took longer than the whole read.
    if rows and isinstance(rows[0][1], str):
        out = ("[" + ",".join([event for _, event in rows]) + "]").encode()
    else:
        out = b"[" + b",".join([event for _, event in rows]) + b"]"
    out = escape_line_separators(out)
    last = rows[-1][0] if rows else None
    more = last is not None and last < decision.event_count
    return TraceJSONPage(events_json=out, next_after_seq=last if more else None)


def decisions_in_flight() -> dict[str, int]:
    """How many decisions are in each not-yet-closed status (``/metrics``)."""
    from django.db.models import Count

    counts: dict[str, int] = {
        str(status): 0
        for status in (
            DecisionStatus.OPEN,
            DecisionStatus.NEEDS_APPROVAL,
            DecisionStatus.APPROVED,
            DecisionStatus.REJECTED,
        )
    }
    rows = Decision.objects.filter(status__in=list(counts)).values("status").annotate(n=Count("pk"))
    for row in rows:
        counts[row["status"]] = row["n"]
    return {str(status): n for status, n in counts.items()}


# The chart groups statuses into three outcomes a reader cares about at a glance.
OUTCOMES = ("committed", "aborted", "in_flight")


@dataclass(frozen=True)
class DashboardStats:
    open_decisions: int
    pending_approvals: int
    resolved_today: int
    median_seconds_to_decision: float | None
    per_day: list[dict[str, Any]]  # [{"day": date, "committed": n, "aborted": n, "in_flight": n}]


def _start_of_today() -> datetime:
    now = timezone.now()
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


def dashboard_stats(actor: Actor, *, days: int = 14, sample: int = 1000) -> DashboardStats:
    """The dashboard's numbers; the median uses the latest ``sample`` closed decisions."""
    visible = decisions_visible_to(actor)
    # The explorer's own filters, so each count equals the rows its dashboard link lists.
    open_count = decision_search(actor, DecisionFilters(closed="no")).count()
    # decisions.services keeps approval_status on the row, so this needs no approvals import.
    pending = visible.filter(approval_status=ApprovalStatus.PENDING).count()
    today = _start_of_today()
    resolved_today = decision_search(actor, DecisionFilters(closed="yes", closed_from=today.date())).count()
    durations = [
        (closed - created).total_seconds()
        for created, closed in visible.filter(closed_at__isnull=False)
        .order_by("-closed_at")
        .values_list("created_at", "closed_at")[:sample]
        if closed is not None
    ]
    median = statistics.median(durations) if durations else None

    first_day = (today - timedelta(days=days - 1)).date()
    rows = (
        visible.filter(created_at__gte=today - timedelta(days=days - 1))
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("pk"))
    )
    by_day: dict[date, dict[str, Any]] = {
        first_day + timedelta(days=i): {"day": first_day + timedelta(days=i), **dict.fromkeys(OUTCOMES, 0)}
        for i in range(days)
    }
    for row in rows:
        bucket = by_day.get(row["day"])
        if bucket is None:
            continue
        outcome = row["status"] if row["status"] in ("committed", "aborted") else "in_flight"
        bucket[outcome] += row["n"]
    return DashboardStats(
        open_decisions=open_count,
        pending_approvals=pending,
        resolved_today=resolved_today,
        median_seconds_to_decision=median,
        per_day=list(by_day.values()),
    )


@dataclass(frozen=True)
class DecisionFilters:
    agent: str = ""
    intent_prefix: str = ""
    status: str = ""
    mode: str = ""
    date_from: date | None = None
    date_to: date | None = None
    has_approval: str = ""  # "", "yes", "no"
    denied: str = ""  # "", "yes" (a policy denied it), "no"
    closed: str = ""  # "", "yes" (committed or aborted), "no" (in flight)
    closed_from: date | None = None  # closed on or after this UTC day
    q: str = ""


def decision_search(actor: Actor, filters: DecisionFilters) -> QuerySet[Decision]:
    """Decisions matching the explorer's filters, newest first."""
    qs = decisions_visible_to(actor).select_related("agent")
    if filters.agent:
        qs = qs.filter(agent_id=filters.agent)
    if filters.intent_prefix:
        qs = qs.filter(intent__startswith=filters.intent_prefix)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.mode:
        qs = qs.filter(automation_mode=filters.mode)
    if filters.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        qs = qs.filter(created_at__lt=end)
    if filters.has_approval == "yes":
        qs = qs.filter(approval_status__isnull=False)
    elif filters.has_approval == "no":
        qs = qs.filter(approval_status__isnull=True)
    if filters.closed == "yes":
        qs = qs.filter(status__in=TERMINAL_STATUSES)
    elif filters.closed == "no":
        qs = qs.exclude(status__in=TERMINAL_STATUSES)
    if filters.closed_from:
        qs = qs.filter(closed_at__gte=datetime.combine(filters.closed_from, time.min, tzinfo=UTC))
    if filters.denied == "yes":
        qs = qs.filter(last_deny_seq__isnull=False)
    elif filters.denied == "no":
        qs = qs.filter(last_deny_seq__isnull=True)
    if filters.q:
        term = filters.q.strip()
        qs = qs.filter(
            Q(decision_id=term)
            | Q(intent__icontains=term)
            | Q(actor__icontains=term)
            | Q(agent__name__icontains=term)
            | Q(instance__icontains=term)
        )
    return qs.order_by("-created_at")


def denied_count_since(actor: Actor, since: date) -> int:
    """Visible decisions created since ``since`` (a UTC day) that a policy denied: the dashboard's
    count, the same rows as the explorer's ``?denied=yes&from=<since>`` (index
    ``decision_denied_created``)."""
    return decision_search(actor, DecisionFilters(denied="yes", date_from=since)).count()


def decision_status_choices() -> list[tuple[str, str]]:
    return list(DecisionStatus.choices)


def agent_choices() -> list[tuple[str, str]]:
    """(agent_id, name) of every agent, for the explorer's agent filter."""
    return list(Agent.objects.order_by("name").values_list("agent_id", "name"))
