"""Appending to the admin audit log (issue 11).

Every service that changes TraceMem's configuration (agents, keys, data sources, products,
policies, grants, routes, integrations, people's permissions) calls :func:`audit_record` inside
its own transaction, after the change and before it commits — as saleor writes its audit rows
inside the domain action. A change that rolls back therefore leaves no entry, and an entry never
describes a change that did not happen.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.selectors import entry_as_dict
from tracemem_core.actor import Actor
from tracemem_core.redaction import redact
from tracemem_verify.audit import audit_entry_hash
from tracemem_verify.chain import GENESIS_HASH

# pg_advisory_xact_lock key of the audit chain ("tm-audit" as a number): appends queue up on it,
# so each one sees the entry committed before it. It needs no privilege, unlike LOCK TABLE.
_CHAIN_LOCK = 0x746D2D6175646974


def _lock_chain() -> None:
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])
    # SQLite (the embedded default) takes its one write lock at BEGIN (transaction_mode IMMEDIATE).


def _stored(value: Any, field: str) -> Any:
    """Redacted (docs/contract/redaction.md rules: secret-like keys and values) and normalised through JSON, so the
    hash covers exactly what is stored. Callers pass allow-listed snapshots; this is the backstop."""
    if value is None:
        return None
    return json.loads(json.dumps(redact(value, field=field)))


def audit_record(
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str,
    before: Any = None,
    after: Any = None,
) -> AuditEntry | None:
    """Append one entry for a change the caller has just made in its open transaction.

    ``before``/``after`` are the object's snapshots (None when it did not exist / no longer
    exists); they are redacted again here. A change that changed nothing (equal snapshots) is not
    recorded. Returns the entry, or None when nothing was recorded.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    stored_before, stored_after = _stored(before, "before"), _stored(after, "after")
    if stored_before is not None and stored_before == stored_after:
        return None
    _lock_chain()
    last = AuditEntry.objects.order_by("-seq").only("seq", "hash").first()
    entry = AuditEntry(
        seq=1 if last is None else last.seq + 1,
        at=timezone.now(),
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=actor.name[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:200],
        before=stored_before,
        after=stored_after,
        prev_hash=GENESIS_HASH if last is None else last.hash,
    )
    entry.hash = audit_entry_hash(entry_as_dict(entry))
    entry.save(force_insert=True)
    return entry


@transaction.atomic
def access_change_record(
    *,
    actor: Actor,
    object_type: str,
    object_id: int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEntry | None:
    """Record a change of a person's or a group's powers (active/staff/superuser flags, groups,
    permissions) made in the Django admin; ``object_type`` is ``user`` or ``group``."""
    verb = "create" if before is None else "delete" if after is None else "update"
    prefix = "user_" if object_type == "user" else "group_"
    return audit_record(
        actor=actor,
        action=f"{object_type}.{verb}",
        object_type=object_type,
        object_id=f"{prefix}{object_id}",
        before=before,
        after=after,
    )


@transaction.atomic
def password_change_record(*, actor: Actor, user: Any) -> AuditEntry | None:
    """Record that ``actor`` set (or disabled) ``user``'s password in the Django admin: by name
    only, never the password or its hash."""
    state = "password changed" if user.has_usable_password() else "password login disabled"
    return audit_record(
        actor=actor,
        action="user.password_change",
        object_type="user",
        object_id=f"user_{user.pk}",
        before={"username": user.get_username()},
        after={"username": user.get_username(), "sign_in": state},
    )
