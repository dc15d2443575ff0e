"""Engineering decision memory: ``decision_record`` and ``decision_search`` (docs/contract/tools.md).

A record is an ordinary decision envelope, committed in one call, with intent
``decision.record.<category>`` and exactly one trace event of type ``record`` that carries the
redacted record fields; the searchable copy of those fields is a :class:`DecisionRecord` row.
Design notes: ``docs/records.md``.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from agents.models import Agent
from decisions.models import (
    AutomationMode,
    Decision,
    DecisionRecord,
    DecisionStatus,
    EventType,
    RecordCategory,
)
from decisions.receipts import receipt_issue
from decisions.selectors import decisions_visible_to
from decisions.services import mark_closed, trace_append
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from tracemem_core.redaction import redact, redact_text
from tracemem_core.timefmt import iso_z

RECORD_INTENT_PREFIX = "decision.record."
SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 100
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
# Record text is the data that matters (an ADR's context, decision and rationale), so it is kept
# whole up to this limit instead of redaction's 1000-character cut, and longer text is refused.
MAX_TEXT = 20_000
# Beyond the decision statuses: records not yet replaced, and records that were.
SEARCH_STATUSES = (*DecisionStatus.values, "active", "superseded")


def _tags(value: Any, field: str = "tags") -> list[str]:
    """Tags as a list of short strings, lowercased and de-duplicated (order kept)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise InvalidArgument(f"{field} must be an array of strings", field=field)
    if len(value) > MAX_TAGS:
        raise InvalidArgument(f"{field} may hold at most {MAX_TAGS} tags, got {len(value)}", field=field)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(f"{field} must contain only non-empty strings, got {item!r}", field=field)
        v.storable(item, field)  # NUL or a lone surrogate: named, never a database error
        tag = redact_text(item.strip()).lower()  # before lowercasing: some patterns are case-sensitive
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidArgument(
                f"each tag is at most {MAX_TAG_LENGTH} characters; {tag[:20]!r}… is longer", field=field
            )
        if tag not in out:
            out.append(tag)
    return out


def _text(value: Any, field: str) -> str:
    clean = redact(v.string(value, field, max_length=MAX_TEXT), field=field, max_string=MAX_TEXT)
    return str(clean)


def _refuse_long_strings(value: Any, path: str) -> None:
    """Refuse (never cut) a string over MAX_TEXT anywhere inside a record field."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise InvalidArgument(
                f"{path} must be at most {MAX_TEXT} characters, got {len(value)}; shorten it or reference "
                "the long material",
                field=path,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_long_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_long_strings(item, f"{path}[{i}]")


def _optional_json(value: Any, field: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, str | list | dict):
        raise InvalidArgument(f"{field} must be a string, an array or an object", field=field)
    _refuse_long_strings(value, field)
    return redact(value, field=field, max_string=MAX_TEXT)


def _require_agent(actor: Actor) -> Agent:
    if actor.kind != "agent" or actor.agent is None:
        raise PermissionDenied("only an agent (authenticated with its key) can record decisions")
    return actor.agent


@transaction.atomic
def decision_record(
    *,
    actor: Actor,
    title: Any,
    category: Any,
    context: Any,
    decision: Any,
    rationale: Any,
    alternatives_considered: Any = None,
    tags: Any = None,
    constraints: Any = None,
    consequences: Any = None,
    supersedes: Any = None,
) -> DecisionRecord:
    """Record an engineering decision (ADR-style) as a committed decision in one call.

    ``supersedes`` names an earlier record of the same agent; that record then shows
    ``superseded_by``. Another agent's record, or a decision that is not a record, is ``not_found``;
    a record that was already superseded is a ``conflict`` (supersede its replacement instead).
    """
    agent = _require_agent(actor)
    clean_category = v.choice(category, "category", RecordCategory.values)
    fields = {
        "title": _text(v.string(title, "title", max_length=200), "title"),
        "category": clean_category,
        "tags": _tags(tags),
        "context": _text(context, "context"),
        "decision": _text(decision, "decision"),
        "rationale": _text(rationale, "rationale"),
        "alternatives_considered": _optional_json(alternatives_considered, "alternatives_considered"),
        "constraints": _optional_json(constraints, "constraints"),
        "consequences": _optional_json(consequences, "consequences"),
    }
    previous: DecisionRecord | None = None
    supersedes_id = v.optional_string(supersedes, "supersedes", max_length=40)
    if supersedes_id:
        # Supersessions of one record queue on its decision's row (closed, never updated again): the
        # record row is append-only, and FOR UPDATE would need the UPDATE privilege on it.
        locked = Decision.objects.select_for_update().filter(pk=supersedes_id, agent=agent)
        previous = (
            DecisionRecord.objects.filter(agent=agent, decision_id=supersedes_id).first()
            if list(locked.values_list("pk", flat=True))
            else None
        )
        if previous is None:
            raise NotFound(
                f"record {supersedes_id} was not found among your records; pass the decision_id of one of your "
                "earlier decision_record calls (decision_search lists them)"
            )
        replacement = DecisionRecord.objects.filter(supersedes=previous).first()
        if replacement is not None:
            raise Conflict(
                f"record {supersedes_id} is already superseded by {replacement.decision_id}; supersede that one instead"
            )
    now = timezone.now()
    envelope = Decision.objects.create(
        agent=agent,
        intent=f"{RECORD_INTENT_PREFIX}{clean_category}",
        automation_mode=AutomationMode.AUTONOMOUS,
        actor=agent.agent_id,
        metadata={},
        created_at=now,
    )
    # The record event commits the envelope: the database closes a decision with its closing event,
    # and takes closed_at from the event's timestamp, so a record is closed when it is created.
    record_event = trace_append(
        decision=envelope,
        type=EventType.RECORD,
        actor=actor,
        payload={**fields, "supersedes": previous.decision_id if previous else None},
        timestamp=now,
    )
    mark_closed(envelope, record_event)
    receipt_issue(decision=envelope, close_event=record_event)
    try:
        with transaction.atomic():
            return DecisionRecord.objects.create(
                decision=envelope,
                agent=agent,
                title=fields["title"],
                category=clean_category,
                tags=fields["tags"],
                tags_text=" ".join(fields["tags"]),
                context=fields["context"],
                decision_text=fields["decision"],
                rationale=fields["rationale"],
                alternatives_considered=fields["alternatives_considered"],
                constraints=fields["constraints"],
                consequences=fields["consequences"],
                supersedes=previous,
                created_at=now,
            )
    except IntegrityError:
        # Two records raced to supersede the same one; the one-to-one constraint let one win.
        raise Conflict(
            f"record {supersedes_id} was superseded concurrently; search again and supersede the newest record"
        ) from None


def _limit(value: Any) -> int:
    if value is None or value == "":
        return SEARCH_LIMIT_DEFAULT
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"limit must be an integer from 1 to {SEARCH_LIMIT_MAX}", field="limit")
    if not 1 <= value <= SEARCH_LIMIT_MAX:
        raise InvalidArgument(
            f"limit must be from 1 to {SEARCH_LIMIT_MAX}, got {value}; page with narrower filters instead",
            field="limit",
        )
    return value


def _text_filter(qs: QuerySet[DecisionRecord], query: str) -> QuerySet[DecisionRecord]:
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        vector = SearchVector("title", "context", "decision_text", "rationale", "tags_text", config="english")
        return qs.annotate(search=vector).filter(
            search=SearchQuery(query, search_type="websearch", config="english")
        )
    # Embedded default (SQLite): every word must occur somewhere in the searchable text.
    for word in query.split():
        qs = qs.filter(
            Q(title__icontains=word)
            | Q(context__icontains=word)
            | Q(decision_text__icontains=word)
            | Q(rationale__icontains=word)
            | Q(tags_text__icontains=word)
        )
    return qs


def decision_search(
    *,
    actor: Actor,
    query: Any = None,
    category: Any = None,
    tags: Any = None,
    status: Any = None,
    limit: Any = None,
) -> list[DecisionRecord]:
    """The actor's records matching all given filters, newest first (at most ``limit``, ≤ 100)."""
    clean_query = v.optional_string(query, "query", max_length=1000)
    clean_limit = _limit(limit)
    qs = DecisionRecord.objects.filter(decision__in=decisions_visible_to(actor)).select_related(
        "decision", "supersedes", "superseded_by"
    )
    if category not in (None, ""):
        qs = qs.filter(category=v.choice(category, "category", RecordCategory.values))
    if status not in (None, ""):
        clean_status = v.choice(status, "status", SEARCH_STATUSES)
        if clean_status == "active":
            qs = qs.filter(superseded_by__isnull=True)
        elif clean_status == "superseded":
            qs = qs.filter(superseded_by__isnull=False)
        else:
            qs = qs.filter(decision__status=clean_status)
    wanted_tags = _tags(tags)
    if wanted_tags and connection.vendor == "postgresql":
        qs = qs.filter(tags__contains=wanted_tags)
    if clean_query and clean_query.strip():
        qs = _text_filter(qs, clean_query.strip())
    qs = qs.order_by("-created_at", "-decision_id")
    if wanted_tags and connection.vendor != "postgresql":
        # SQLite has no JSON containment; filter in Python (the embedded default is small).
        return [r for r in qs if set(wanted_tags) <= set(r.tags)][:clean_limit]
    return list(qs[:clean_limit])


def _superseded_by(record: DecisionRecord) -> str | None:
    try:
        return record.superseded_by.decision_id
    except DecisionRecord.DoesNotExist:
        return None


def record_out(record: DecisionRecord) -> dict[str, Any]:
    """The ``decision_record`` result (MCP and REST)."""
    return {
        "decision_id": record.decision_id,
        "status": record.decision.status,
        "created_at": iso_z(record.decision.created_at),
        "closed_at": iso_z(record.decision.closed_at),
        "title": record.title,
        "category": record.category,
        "tags": record.tags,
        "supersedes": record.supersedes_id,
    }


def search_out(records: list[DecisionRecord]) -> dict[str, Any]:
    """The ``decision_search`` result (MCP and REST)."""
    results = [
        {
            "decision_id": r.decision_id,
            "title": r.title,
            "category": r.category,
            "tags": r.tags,
            "status": r.decision.status,
            "intent": r.decision.intent,
            "created_at": iso_z(r.decision.created_at),
            "supersedes": r.supersedes_id,
            "superseded_by": _superseded_by(r),
        }
        for r in records
    ]
    return {"results": results, "count": len(results)}


MAX_CHAIN = 500


def record_of(decision: Decision) -> DecisionRecord | None:
    """The record fields of a decision, or None when it is not a ``decision_record``."""
    return DecisionRecord.objects.filter(decision=decision).select_related("decision").first()


def record_chain(record: DecisionRecord) -> list[DecisionRecord]:
    """The whole supersession chain a record belongs to, oldest first (for the decision explorer).

    A chain only ever links records of one agent, so whoever may see ``record`` may see the chain.
    """
    chain = [record]
    seen = {record.decision_id}
    current = record
    while current.supersedes_id and len(chain) < MAX_CHAIN:
        current = DecisionRecord.objects.select_related("decision").get(pk=current.supersedes_id)
        if current.decision_id in seen:
            break
        seen.add(current.decision_id)
        chain.insert(0, current)
    current = record
    while len(chain) < MAX_CHAIN:
        newer = DecisionRecord.objects.select_related("decision").filter(supersedes=current).first()
        if newer is None or newer.decision_id in seen:
            break
        seen.add(newer.decision_id)
        chain.append(newer)
        current = newer
    return chain
