"""Reading and verifying the admin audit log (superusers only)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from audit.models import AuditEntry
from tracemem_core import safejson
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument
from tracemem_core.permissions import require_superuser
from tracemem_core.timefmt import iso_z
from tracemem_verify.audit import AuditBreak, verify_audit_chain

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
OBJECT_TYPE_RE = re.compile(r"^[a-z][a-z_]{0,63}$")


def entry_as_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry exactly as ``GET /api/v1/admin/audit-log`` returns it (and as its hash covers)."""
    return {
        "seq": entry.seq,
        "at": iso_z(entry.at),
        "actor": {"kind": entry.actor_kind, "id": entry.actor_id, "name": entry.actor_name},
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "before": entry.before,
        "after": entry.after,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _timestamp(raw: Any, field: str) -> datetime | None:
    if raw is None or raw == "":
        return None
    text = v.string(raw, field, max_length=64)
    try:
        parsed = parse_datetime(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidArgument(
            f"{field} must be an ISO-8601 timestamp such as 2026-11-23T10:00:00Z; got {text!r}", field=field
        )
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def clean_filters(
    *, actor: Any = None, object: Any = None, since: Any = None, until: Any = None
) -> AuditFilters:
    """Check the query's filters, each refused with a message naming it and what it takes."""
    clean_actor = v.string(actor, "actor", max_length=150) if actor not in (None, "") else None
    object_type = object_id = None
    if object not in (None, ""):
        text = v.string(object, "object", max_length=300)
        object_type, _, rest = text.partition(":")
        if not OBJECT_TYPE_RE.match(object_type) or (":" in text and not rest):
            raise InvalidArgument(
                "object must be an object type such as route, or type:id such as route:route_finance; "
                f"got {text!r}",
                field="object",
            )
        object_id = rest or None
    clean_since, clean_until = _timestamp(since, "since"), _timestamp(until, "until")
    if clean_since and clean_until and clean_since >= clean_until:
        raise InvalidArgument("since must be earlier than until", field="since")
    return AuditFilters(clean_actor, object_type, object_id, clean_since, clean_until)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before_seq": seq}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int | None:
    if cursor in (None, ""):
        return None
    text = v.string(cursor, "cursor", max_length=200)
    problem = "cursor is not one this server issued; pass next_cursor from the previous page unchanged"
    try:
        decoded = safejson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise InvalidArgument(problem, field="cursor") from None
    seq = decoded.get("before_seq") if isinstance(decoded, dict) else None
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidArgument(problem, field="cursor")
    return seq


def _limit(raw: Any) -> int:
    if raw in (None, ""):
        return DEFAULT_LIMIT
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidArgument(
            f"limit must be an integer from 1 to {MAX_LIMIT}; got {text[:20]!r}", field="limit"
        )
    return int(text)


def _filtered(filters: AuditFilters) -> QuerySet[AuditEntry]:
    qs = AuditEntry.objects.all()
    if filters.actor:
        qs = qs.filter(Q(actor_id=filters.actor) | Q(actor_name=filters.actor))
    if filters.object_type:
        qs = qs.filter(object_type=filters.object_type)
    if filters.object_id:
        qs = qs.filter(object_id=filters.object_id)
    if filters.since:
        qs = qs.filter(at__gte=filters.since)
    if filters.until:
        qs = qs.filter(at__lt=filters.until)
    return qs


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    filters: AuditFilters
    next_cursor: str | None


QUERY_PARAMETERS = ("actor", "object", "since", "until", "cursor", "limit")


def audit_log_page(actor: Actor, query: Mapping[str, Any]) -> AuditPage:
    """Entries newest first, ``limit`` at a time; ``next_cursor`` is None on the last page.

    ``query`` holds the request's parameters (``QUERY_PARAMETERS``); each is checked, and one the
    log does not take is refused rather than ignored.
    """
    require_superuser(actor, "read the admin audit log")
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise InvalidArgument(
            f"unknown parameter {unknown[0]!r}; the audit log takes {', '.join(QUERY_PARAMETERS)}",
            field=unknown[0],
        )
    repeated = sorted(name for name, value in query.items() if isinstance(value, list))
    if repeated:
        raise InvalidArgument(
            f"parameter {repeated[0]!r} is given more than once; give it once", field=repeated[0]
        )
    filters = clean_filters(
        actor=query.get("actor"),
        object=query.get("object"),
        since=query.get("since"),
        until=query.get("until"),
    )
    before_seq = _decode_cursor(query.get("cursor"))
    size = _limit(query.get("limit"))
    qs = _filtered(filters).order_by("-seq")
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return AuditPage(rows, filters, _encode_cursor(rows[-1].seq) if more else None)


def audit_verify() -> tuple[int, AuditBreak | None]:
    """Recompute the whole chain; returns (entries checked, the first break or None). Admin changes
    are few, so the log is read in one pass."""
    entries = [entry_as_dict(e) for e in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000)]
    return len(entries), verify_audit_chain(entries)


def user_access(user_id: int) -> dict[str, Any] | None:
    """What decides a person's powers, as the audit log records it (None if there is no such user)."""
    user = get_user_model().objects.filter(pk=user_id).prefetch_related("groups", "user_permissions").first()
    if user is None:
        return None
    return {
        "username": user.get_username(),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(g.name for g in user.groups.all()),
        "permissions": sorted(
            f"{p.content_type.app_label}.{p.codename}"
            for p in user.user_permissions.select_related("content_type")
        ),
    }


def group_access(group_id: int) -> dict[str, Any] | None:
    group = Group.objects.filter(pk=group_id).first()
    if group is None:
        return None
    return {
        "name": group.name,
        "permissions": sorted(
            f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")
        ),
        "members": sorted(u.get_username() for u in group.user_set.all()),
    }
