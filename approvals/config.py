"""``apply_config`` sections of approvals: ``routes``, ``webhook_endpoints``, ``slack_integrations``."""

from __future__ import annotations

from typing import Any

from approvals.models import (
    ApprovalRoute,
)
from approvals.services.integrations import (
    SLACK_INTEGRATION,
    WEBHOOK_ENDPOINT,
    DestinationKind,
    _destination_name,
    destination_create,
    destination_update,
)
from approvals.services.routes import clean_route, route_upsert
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    InvalidArgument,
)


def _apply_destinations(
    kind: DestinationKind, section: str, *, actor: Actor, items: Any, dry_run: bool
) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidArgument(f"{section} must be a list of objects", field=section)
    lines: list[str] = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in items:
        name = _destination_name(kind, item.get("name"))
        if kind.model.objects.filter(name=name).exists():
            _, changed = destination_update(actor=actor, kind=kind, name=name, data=item)
            lines.append(
                f"{prefix}update {kind.label} {name}" if changed else f"{kind.label} {name} unchanged"
            )
        else:
            destination_create(actor=actor, kind=kind, data=item)
            lines.append(f"{prefix}create {kind.label} {name}")
    return lines


def apply_webhook_endpoints(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``webhook_endpoints``: [{name, url, signing_secret?}] (a secret left
    out keeps the stored one); idempotent. Never prints a secret."""
    return _apply_destinations(
        WEBHOOK_ENDPOINT, "webhook_endpoints", actor=actor, items=items, dry_run=dry_run
    )


def apply_slack_integrations(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``slack_integrations``: [{name, bot_token?, signing_secret?,
    api_base_url?}]; idempotent. Never prints a secret."""
    return _apply_destinations(
        SLACK_INTEGRATION, "slack_integrations", actor=actor, items=items, dry_run=dry_run
    )


def apply_routes(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """The ``routes`` section of ``manage.py apply_config``; idempotent (an equal route changes nothing)."""
    if not isinstance(items, list):
        raise InvalidArgument("routes must be a list of route definitions", field="routes")
    lines: list[str] = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in items:
        route_id, fields = clean_route(item)
        exists = ApprovalRoute.objects.filter(route_id=route_id).exists()
        route, changed = route_upsert(actor=actor, route_id=route_id, fields=fields)
        if not exists:
            lines.append(f"{prefix}create route {route_id}")
        elif changed:
            lines.append(f"{prefix}update route {route_id}")
        else:
            lines.append(f"route {route_id} unchanged")
    return lines
