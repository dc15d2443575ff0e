"""Approval routes: which route applies to a decision, and routes as configuration (REST, apply_config)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from approvals import conf
from approvals.models import (
    ApprovalRoute,
    Channel,
)
from approvals.selectors import (
    route_definition,
)
from approvals.services.integrations import route_destinations_check
from audit.services import audit_record
from decisions.models import Decision
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
)
from tracemem_core.ids import SLUG_RE
from tracemem_core.permissions import is_superuser, require_perm, require_superuser


def route_for(*, approval_route_id: str | None, decision: Decision) -> ApprovalRoute:
    """The argument, else the decision's latest exception route, else the default route (docs/contract/tools.md)."""
    wanted = approval_route_id or decision.exception_route_id or conf.default_route_id() or None
    if wanted:
        route = ApprovalRoute.objects.filter(route_id=wanted).first()
        if route is None:
            field = "approval_route_id" if approval_route_id else "exception_route_id"
            raise InvalidArgument(
                f"approval route {wanted!r} does not exist; ask an admin to create it or pass another "
                "approval_route_id",
                field=field,
            )
        return route
    route = ApprovalRoute.objects.filter(is_default=True).first()
    if route is None:
        raise InvalidArgument(
            "no approval route given and no default route is configured; pass approval_route_id or ask an admin "
            "to mark a route as default",
            field="approval_route_id",
        )
    return route


# --- routes as configuration (apply_config, seed_demo) ------------------------------------------

_ROUTE_FIELDS = (
    "name",
    "channels",
    "approver_group",
    "required_approvals",
    "require_rationale",
    "expires_in_seconds",
    "allow_agent_owner",
    "default",
)


def clean_route(item: Any) -> tuple[str, dict[str, Any]]:
    item = v.json_object(item, "routes[]")
    unknown = sorted(set(item) - {"route_id", *_ROUTE_FIELDS})
    if unknown:
        raise InvalidArgument(
            f"unknown route field(s) {', '.join(unknown)}; allowed: route_id, {', '.join(_ROUTE_FIELDS)}",
            field="routes[]",
        )
    route_id = v.string(item.get("route_id"), "route_id", max_length=100)
    if not SLUG_RE.match(route_id):
        raise InvalidArgument(
            f"route_id must be a lowercase slug like route_finance; got {route_id!r}", field="route_id"
        )
    channels = item.get("channels", [])
    if not isinstance(channels, list) or any(
        not isinstance(c, dict) or c.get("type") not in Channel.values for c in channels
    ):
        raise InvalidArgument(
            "channels must be a list of objects whose type is email, slack or webhook", field="channels"
        )
    route_destinations_check(channels)
    fields: dict[str, Any] = {
        "name": v.optional_string(item.get("name"), "name") or route_id,
        "channels": channels,
    }
    for name, default in (("required_approvals", 1), ("expires_in_seconds", 86400)):
        value = v.optional_seconds(item.get(name), name)
        value = default if value is None else value
        if value < 1:
            raise InvalidArgument(f"{name} must be at least 1", field=name)
        fields[name] = value
    for name in ("require_rationale", "allow_agent_owner"):
        fields[name] = bool(v.optional_bool(item.get(name), name))
    fields["is_default"] = bool(v.optional_bool(item.get("default"), "default"))
    fields["approver_group"] = v.optional_string(item.get("approver_group"), "approver_group", max_length=150)
    return route_id, fields


OWNER_VOTE_RULE = (
    "let agent owners vote on their own agents' requests (allow_agent_owner), or change who decides "
    "(approver_group, required_approvals) on a route that lets them"
)


def route_rules_check(*, actor: Actor, route_id: str, fields: dict[str, Any]) -> None:
    """Refuse a non-superuser a route that lets agent owners vote on their own agents' requests,
    unless it already did with the same group and quorum (``fields`` as :func:`clean_route` gives).

    An agent names its route (``approval_route_id``), so a route manager who owns an agent could
    otherwise create or re-point such a route and approve their own agent's next request. Taking the
    owners' vote away, and any other change, stay with ``approvals.manage_routes``.
    """
    if not fields.get("allow_agent_owner") or is_superuser(actor):
        return
    route = ApprovalRoute.objects.select_related("approver_group").filter(route_id=route_id).first()
    if route is not None and route.allow_agent_owner:
        group = route.approver_group.name if route.approver_group is not None else None
        if (group, route.required_approvals) == (
            fields.get("approver_group"),
            fields.get("required_approvals"),
        ):
            return
    require_superuser(actor, OWNER_VOTE_RULE)


@transaction.atomic
def route_upsert(*, actor: Actor, route_id: str, fields: dict[str, Any]) -> tuple[ApprovalRoute, bool]:
    """Create or update a route from clean fields; ``approver_group`` is a group name (created if new).

    Returns ``(route, changed)``. Marking a route default unmarks the previous default.
    """
    from django.contrib.auth.models import Group

    require_perm(actor, "approvals.manage_routes")
    route_rules_check(actor=actor, route_id=route_id, fields=fields)
    values = dict(fields)
    group_name = values.pop("approver_group", None)
    values["approver_group"] = Group.objects.get_or_create(name=group_name)[0] if group_name else None
    route_destinations_check(values["channels"], lock=True)
    route = ApprovalRoute.objects.select_for_update().filter(route_id=route_id).first()
    if route is not None and all(getattr(route, k) == val for k, val in values.items()):
        return route, False
    before = route_definition(route) if route is not None else None
    if values.get("is_default"):
        for previous in (
            ApprovalRoute.objects.select_for_update().filter(is_default=True).exclude(route_id=route_id)
        ):
            unmarked = route_definition(previous)
            previous.is_default = False
            previous.save(update_fields=["is_default", "updated_at"])
            _audit_route(actor, "route.update", unmarked, route_definition(previous))
    route, _ = ApprovalRoute.objects.update_or_create(route_id=route_id, defaults=values)
    _audit_route(actor, "route.create" if before is None else "route.update", before, route_definition(route))
    return route, True


@transaction.atomic
def route_delete(*, actor: Actor, route_id: str) -> None:
    """Delete a route no approval used (approvals keep their route: ``invalid_state`` otherwise)."""
    require_perm(actor, "approvals.manage_routes")
    route = ApprovalRoute.objects.select_for_update().filter(route_id=route_id).first()
    if route is None:
        raise NotFound(f"approval route {route_id} was not found")
    if route.approvals.exists():
        raise InvalidState(f"route {route_id} has approvals; it cannot be deleted (they refer to it)")
    before = route_definition(route)
    route.delete()
    audit_record(actor=actor, action="route.delete", object_type="route", object_id=route_id, before=before)


def _audit_route(actor: Actor, action: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    audit_record(
        actor=actor,
        action=action,
        object_type="route",
        object_id=after["route_id"],
        before=before,
        after=after,
    )


def route_create(*, actor: Actor, data: Any) -> ApprovalRoute:
    """``POST /api/v1/admin/routes``: a new route (``conflict`` if the route_id exists)."""
    require_perm(actor, "approvals.manage_routes")
    route_id, fields = clean_route(data)
    if ApprovalRoute.objects.filter(route_id=route_id).exists():
        raise Conflict(f"route {route_id} already exists; PATCH /api/v1/admin/routes/{route_id} to change it")
    return route_upsert(actor=actor, route_id=route_id, fields=fields)[0]


def route_update(*, actor: Actor, route_id: str, data: Any) -> ApprovalRoute:
    """``PATCH /api/v1/admin/routes/{route_id}``: change the given fields, keep the others."""
    require_perm(actor, "approvals.manage_routes")
    route = ApprovalRoute.objects.filter(route_id=route_id).select_related("approver_group").first()
    if route is None:
        raise NotFound(f"approval route {route_id} was not found")
    current = route_definition(route)
    patch = v.json_object(data, "body")
    if "route_id" in patch and patch["route_id"] != route_id:
        raise InvalidArgument("route_id cannot change; create a new route instead", field="route_id")
    clean_id, fields = clean_route({**current, **patch})
    return route_upsert(actor=actor, route_id=clean_id, fields=fields)[0]
