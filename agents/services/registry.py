"""Agents and their keys: create, update, disable; issue, rotate, revoke; authenticate a key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agents import keycache, keys
from agents.models import Agent, AgentKey, PersonalToken
from agents.selectors import proposed_key_name, require_key_admin
from audit.services import audit_record
from tracemem_core import rate_limit
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import Conflict, InvalidArgument, Unauthenticated
from tracemem_core.permissions import require_perm
from tracemem_core.timefmt import iso_z

# last_used_at is a hint for admins, not an audit record: writing it on every request would
# turn each read into a write, so it is refreshed at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    key: AgentKey
    secret: str  # shown exactly once, never stored


def _require_agent_admin(actor: Actor) -> None:
    require_perm(actor, "agents.manage_agents")


# What the admin audit log keeps of each object (never a secret or a hash of one).


def _agent_audit(agent: Agent) -> dict[str, object]:
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "description": agent.description,
        "owner": agent.owner.get_username() if agent.owner is not None else None,
        "disabled": agent.disabled,
    }


def _key_audit(key: AgentKey) -> dict[str, object]:
    return {
        "key_id": key.key_id,
        "agent_id": key.agent_id,
        "name": key.name,
        "prefix": key.prefix,
        "expires_at": iso_z(key.expires_at),
        "revoked_at": iso_z(key.revoked_at),
        "rotated_from": f"key_{key.rotated_from_id}" if key.rotated_from_id else None,
    }


def _token_audit(token: PersonalToken) -> dict[str, object]:
    return {
        "id": token.token_id,
        "user": token.user.get_username(),
        "name": token.name,
        "prefix": token.prefix,
        "expires_at": iso_z(token.expires_at),
        "revoked_at": iso_z(token.revoked_at),
    }


def _validate_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"{field} is required and must be a non-empty string", field=field)
    cleaned = name.strip()
    if len(cleaned) > 100:
        raise InvalidArgument(f"{field} must be at most 100 characters", field=field)
    return cleaned


@transaction.atomic
def agent_create(*, actor: Actor, name: object, owner: User | None = None, description: str = "") -> Agent:
    """Create an agent. Names are unique so that configs and logs can refer to them."""
    _require_agent_admin(actor)
    cleaned = _validate_name(name)
    try:
        with transaction.atomic():
            agent = Agent.objects.create(name=cleaned, owner=owner, description=description or "")
    except IntegrityError:
        raise Conflict(f"an agent named {cleaned!r} already exists") from None
    audit_record(
        actor=actor,
        action="agent.create",
        object_type="agent",
        object_id=agent.agent_id,
        after=_agent_audit(agent),
    )
    return agent


def agent_get_or_create(*, actor: Actor, name: object, owner: User | None = None) -> tuple[Agent, bool]:
    """Idempotent variant used by management commands and the demo seed."""
    _require_agent_admin(actor)
    existing = Agent.objects.filter(name=_validate_name(name)).first()
    if existing is not None:
        return existing, False
    return agent_create(actor=actor, name=name, owner=owner), True


def agent_set_disabled(*, actor: Actor, agent: Agent, disabled: bool) -> Agent:
    """Disable (or re-enable) an agent; a disabled agent's keys all stop on the next request."""
    return agent_update(actor=actor, agent=agent, disabled=disabled)


_UNSET: object = object()


@transaction.atomic
def agent_update(
    *,
    actor: Actor,
    agent: Agent,
    name: object = _UNSET,
    description: object = _UNSET,
    owner: User | None | object = _UNSET,
    disabled: object = _UNSET,
) -> Agent:
    """Change an agent's name, description, owner or disabled flag (only the ones passed).

    Disabling stops every key of the agent from the next request on; the keys themselves are left
    as they are, so re-enabling brings back exactly the keys that were working.
    """
    _require_agent_admin(actor)
    locked = Agent.objects.select_for_update().get(pk=agent.pk)
    before = _agent_audit(locked)
    fields: list[str] = []
    if name is not _UNSET:
        cleaned = _validate_name(name)
        if Agent.objects.filter(name=cleaned).exclude(pk=locked.pk).exists():
            raise Conflict(f"an agent named {cleaned!r} already exists; pick another name")
        locked.name = cleaned
        fields.append("name")
    if description is not _UNSET:
        if not isinstance(description, str) or len(description) > 2000:
            raise InvalidArgument(
                "description must be a string of at most 2000 characters", field="description"
            )
        locked.description = description
        fields.append("description")
    if owner is not _UNSET:
        locked.owner = owner  # type: ignore[assignment]
        fields.append("owner")
    if disabled is not _UNSET:
        if not isinstance(disabled, bool):
            raise InvalidArgument("disabled must be true or false", field="disabled")
        locked.disabled = disabled
        fields.append("disabled")
    if fields:
        locked.save(update_fields=fields)
        keycache.invalidate_with_transaction()  # a disabled agent, or a new name its next events carry
        audit_record(
            actor=actor,
            action="agent.update",
            object_type="agent",
            object_id=locked.agent_id,
            before=before,
            after=_agent_audit(locked),
        )
    return locked


def _new_key(
    agent: Agent, name: str, expires_at: datetime | None, rotated_from: AgentKey | None = None
) -> IssuedKey:
    secret = keys.generate(keys.AGENT_KEY_PREFIX)
    key = AgentKey.objects.create(
        agent=agent,
        name=_validate_name(name),
        prefix=keys.lookup_prefix(secret, keys.AGENT_KEY_PREFIX),
        key_hash=keys.digest(secret),
        expires_at=expires_at,
        rotated_from=rotated_from,
    )
    return IssuedKey(key=key, secret=secret)


@transaction.atomic
def agent_key_issue(
    *, actor: Actor, agent: Agent, name: str | None = None, expires_at: datetime | None = None
) -> IssuedKey:
    """Issue a new key for an agent. The secret is returned once and only its hash is stored.
    Without a ``name`` the key gets one none of the agent's keys has (``proposed_key_name``)."""
    require_key_admin(actor, agent)
    issued = _new_key(
        agent, proposed_key_name(agent) if name is None else name, v.future_instant(expires_at, "expires_at")
    )
    audit_record(
        actor=actor,
        action="agent_key.issue",
        object_type="agent_key",
        object_id=issued.key.key_id,
        after=_key_audit(issued.key),
    )
    return issued


@transaction.atomic
def agent_key_revoke(*, actor: Actor, key: AgentKey) -> AgentKey:
    """Revoke a key; it is refused from the very next request on."""
    require_key_admin(actor, key.agent)
    before = _key_audit(AgentKey.objects.select_for_update().get(pk=key.pk))
    AgentKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    keycache.invalidate_with_transaction()
    key.refresh_from_db()
    audit_record(
        actor=actor,
        action="agent_key.revoke",
        object_type="agent_key",
        object_id=key.key_id,
        before=before,
        after=_key_audit(key),
    )
    return key


@transaction.atomic
def agent_key_rotate(*, actor: Actor, key: AgentKey, grace_seconds: int = 0) -> IssuedKey:
    """Issue a replacement key; the old one keeps working for ``grace_seconds`` (0 = stops now)."""
    require_key_admin(actor, key.agent)
    if (
        not isinstance(grace_seconds, int)
        or isinstance(grace_seconds, bool)
        or not 0 <= grace_seconds <= 30 * 86400
    ):
        raise InvalidArgument(
            "grace_seconds must be an integer from 0 to 2592000 (30 days)", field="grace_seconds"
        )
    old = AgentKey.objects.select_for_update().get(pk=key.pk)
    if old.state() != "active":
        raise Conflict(f"key {old.prefix}… is {old.state()}; only an active key can be rotated")
    before = _key_audit(old)
    issued = _new_key(old.agent, old.name, old.expires_at, rotated_from=old)
    cutoff = timezone.now() + timedelta(seconds=grace_seconds)
    if grace_seconds == 0:
        old.revoked_at = timezone.now()
    elif old.expires_at is None or old.expires_at > cutoff:
        old.expires_at = cutoff
    old.save(update_fields=["revoked_at", "expires_at"])
    keycache.invalidate_with_transaction()
    audit_record(
        actor=actor,
        action="agent_key.rotate",
        object_type="agent_key",
        object_id=old.key_id,
        before=before,
        after={**_key_audit(old), "replaced_by": _key_audit(issued.key)},
    )
    return issued


def _parse_authorization(header: str | None, schemes: tuple[str, ...]) -> str:
    if not header:
        raise Unauthenticated(
            "no Authorization header; send 'Authorization: Agent <key>'", details={"reason": "missing"}
        )
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() not in schemes:
        raise Unauthenticated(
            f"Authorization header must be '{schemes[0].capitalize()} <key>'", details={"reason": "malformed"}
        )
    return parts[1]


def _touch_due(last_used: datetime | None, now: datetime) -> bool:
    return last_used is None or now - last_used >= LAST_USED_RESOLUTION


def _touch(model: type[AgentKey] | type[PersonalToken], pk: int, last_used: datetime | None) -> bool:
    """Refresh ``last_used_at`` when it is older than the resolution; True when it was due."""
    now = timezone.now()
    if _touch_due(last_used, now):
        model.objects.filter(pk=pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        return True
    return False


@dataclass(frozen=True)
class KeyCheck:
    agent: Agent
    key: AgentKey
    # The request counted in its agent's rate window on the way (``count_request``), or None.
    counted: rate_limit.Counted | None


def _refusal(key: AgentKey, agent: Agent) -> Unauthenticated | None:
    state = key.state()
    if state == "revoked":
        return Unauthenticated(
            "the agent key has been revoked; ask an admin for a new one", details={"reason": "revoked"}
        )
    if state == "expired":
        return Unauthenticated(
            "the agent key has expired; ask an admin for a new one", details={"reason": "expired"}
        )
    if agent.disabled:
        return Unauthenticated(
            "the agent is disabled; its keys do not work", details={"reason": "agent_disabled"}
        )
    return None


def agent_key_authenticate(*, authorization: str | None, count_request: bool = False) -> KeyCheck:
    """Check an ``Authorization`` header carrying an agent key (``Agent`` or ``Bearer`` scheme).

    Raises ``Unauthenticated`` whose ``details.reason`` is one of missing, malformed, unknown,
    expired, revoked, agent_disabled. Never says which keys exist.

    With ``count_request`` (the caller enforces the agent rate limit), a key remembered by this
    process is confirmed and the request counted in its agent's rate window in the same round trip
    (``counted``); a request refused here is never counted. ``counted`` is None when the key had to
    be checked in the database: the caller counts the request itself.
    """
    secret = _parse_authorization(authorization, ("agent", "bearer"))
    if not keys.is_well_formed(secret, keys.AGENT_KEY_PREFIX):
        raise Unauthenticated(
            "the agent key is malformed: expected tmem_ followed by 40 letters and digits",
            details={"reason": "malformed"},
        )
    digest = keys.digest(secret)
    entry = keycache.recall(digest)
    refusal = _refusal(entry.key, entry.agent) if entry is not None else None
    window = None
    # Counted on the way only when nothing after the round trip can fail: rows that pass, and no
    # last_used_at to write (a database error there would fail the request after counting it).
    if (
        count_request
        and entry is not None
        and refusal is None
        and not _touch_due(entry.key.last_used_at, timezone.now())
    ):
        window = rate_limit.agent_window(entry.agent.agent_id)
    # Read before any database check, so a change committed after it is never remembered as current.
    read_in = keycache.epoch()
    generation, counted = keycache.confirm(entry, window)
    if entry is not None and entry.generation == generation:
        key = keycache.copies(entry)[1]
    else:
        prefix = keys.lookup_prefix(secret, keys.AGENT_KEY_PREFIX)
        candidates = AgentKey.objects.select_related("agent").filter(prefix=prefix)
        found = next((c for c in candidates if keys.matches(secret, c.key_hash)), None)
        if found is None:
            raise Unauthenticated("the agent key is not known to this server", details={"reason": "unknown"})
        key = found
        keycache.remember(digest, key, generation, read_in)
        refusal = _refusal(key, key.agent)
    if refusal is not None:
        raise refusal
    if counted is None and _touch(AgentKey, key.pk, key.last_used_at):
        key.last_used_at = timezone.now()
        keycache.note_used(digest, key)
    return KeyCheck(key.agent, key, counted)
