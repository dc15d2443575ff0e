"""Outbound destinations: webhook endpoints and Slack integrations. Secrets are write-only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from standardwebhooks import Webhook

from approvals import selectors
from approvals.models import (
    SlackIntegration,
    WebhookCredential,
    WebhookEndpoint,
)
from audit.services import audit_record
from tracemem_core import outbound
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
)
from tracemem_core.permissions import require_perm, require_superuser
from tracemem_core.timefmt import iso_z

# --- integrations (Slack apps, webhook endpoints and credentials): secrets are write-only -------

Integration = SlackIntegration | WebhookEndpoint
_INTEGRATION_TYPES: dict[type, str] = {
    SlackIntegration: "slack_integration",
    WebhookEndpoint: "webhook_endpoint",
    WebhookCredential: "webhook_credential",
}


def _integration_audit(item: Integration | WebhookCredential) -> dict[str, Any]:
    if isinstance(item, SlackIntegration):
        return {"name": item.name, "api_base_url": outbound.public_url(item.api_base_url)}
    if isinstance(item, WebhookEndpoint):
        return {"name": item.name, "url": outbound.public_url(item.url)}
    return {
        "name": item.name,
        "user": item.user.get_username(),
        "prefix": item.prefix,
        "revoked_at": iso_z(item.revoked_at),
    }


def _audit_integration(
    actor: Actor, verb: str, item: Integration | WebhookCredential, before: Any, after: Any
) -> None:
    kind = _INTEGRATION_TYPES[type(item)]
    object_id = f"cred_{item.pk}" if isinstance(item, WebhookCredential) else item.name
    audit_record(
        actor=actor,
        action=f"{kind}.{verb}",
        object_type=kind,
        object_id=object_id,
        before=before,
        after=after,
    )


# --- outbound destinations: webhook endpoints and Slack integrations (issue 13) ----------------
# One path for every door (admin API, apply_config, Django admin): validated here, the URL through
# the outbound rule (tracemem_core.outbound), saved, audited with secrets by name only.

MANAGE_INTEGRATIONS = "approvals.manage_integrations"
DESTINATION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class DestinationKind:
    model: type[WebhookEndpoint] | type[SlackIntegration]
    channel: str  # the route channel type that names it
    channel_key: str  # the key of that channel entry holding its name
    label: str
    url_field: str
    url_what: str
    fields: tuple[str, ...]  # settable besides the name, in this order
    required: tuple[str, ...]  # on creation
    secrets: tuple[str, ...]  # write-only
    defaults: tuple[tuple[str, str], ...]
    api_path: str
    read_area: str  # tracemem_core.permissions.READERS
    # Besides MANAGE_INTEGRATIONS, changes need a superuser when this says why (completes "only an
    # active superuser may ...").
    superuser_only: str | None = None


WEBHOOK_ENDPOINT = DestinationKind(
    model=WebhookEndpoint,
    channel="webhook",
    channel_key="endpoint",
    label="webhook endpoint",
    url_field="url",
    url_what="webhook url",
    fields=("url", "signing_secret"),
    required=("url", "signing_secret"),
    secrets=("signing_secret",),
    defaults=(),
    api_path="/api/v1/admin/webhook-endpoints",
    read_area="webhook_endpoints",
)
SLACK_INTEGRATION = DestinationKind(
    model=SlackIntegration,
    channel="slack",
    channel_key="integration",
    label="Slack integration",
    url_field="api_base_url",
    url_what="slack api_base_url",
    fields=("api_base_url", "bot_token", "signing_secret"),
    required=("bot_token", "signing_secret"),
    secrets=("bot_token", "signing_secret"),
    defaults=(("api_base_url", "https://slack.com/api/"),),
    api_path="/api/v1/admin/integrations",
    read_area="slack_integrations",
    # Its signing secret and API (users.info) decide which reviewer a button press votes as: setting
    # them is impersonation, like a webhook credential for somebody else.
    superuser_only=(
        "create, change or delete a Slack integration: its signing secret and API decide which reviewer "
        "a Slack button press votes as"
    ),
)
DESTINATION_KINDS = {kind.channel: kind for kind in (WEBHOOK_ENDPOINT, SLACK_INTEGRATION)}


def _require_destination_admin(actor: Actor, kind: DestinationKind) -> None:
    require_perm(actor, MANAGE_INTEGRATIONS)
    if kind.superuser_only is not None:
        require_superuser(actor, kind.superuser_only)


def _check_signing_secret(kind: DestinationKind, secret: str) -> None:
    if kind is not WEBHOOK_ENDPOINT:
        return
    try:
        Webhook(secret)  # decodes the base64 after whsec_
        valid = secret.startswith("whsec_")
    except Exception:
        valid = False
    if not valid:
        raise InvalidArgument(
            "signing_secret must be a Standard Webhooks secret: whsec_ followed by base64 (e.g. "
            "whsec_ + base64 of 24 random bytes)",
            field="signing_secret",
        )


def clean_destination(kind: DestinationKind, data: Any, *, creating: bool) -> dict[str, str]:
    """The validated fields (not the name) of a webhook endpoint or Slack integration, with the URL
    checked against the outbound rule; on an update only the fields given (a secret left out is
    kept). Errors name the field and never repeat a secret."""
    data = v.json_object(data, "body")
    unknown = sorted(set(data) - set(kind.fields))
    if unknown:
        raise InvalidArgument(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(kind.fields)}", field=unknown[0]
        )
    fields = dict(kind.defaults) if creating else {}
    for name in kind.fields:
        if data.get(name) is not None:
            fields[name] = v.string(data[name], name, max_length=1000 if name == kind.url_field else 500)
        elif creating and name in kind.required:
            raise InvalidArgument(f"{name} is required to create a {kind.label}", field=name)
    if data.get(kind.url_field) is not None:  # the default (Slack's own API) needs no check
        outbound.check_url(fields[kind.url_field], what=kind.url_what, field=kind.url_field)
    if "signing_secret" in fields:
        _check_signing_secret(kind, fields["signing_secret"])
    return fields


def _destination_name(kind: DestinationKind, name: Any) -> str:
    clean = v.string(name, "name", max_length=64)
    if not DESTINATION_NAME_RE.match(clean):
        raise InvalidArgument(
            f"name must be 1-64 letters, digits, - or _ (routes name the {kind.label} by it); got {clean!r}",
            field="name",
        )
    return clean


@transaction.atomic
def destination_create(*, actor: Actor, kind: DestinationKind, data: Any) -> Integration:
    """Create a webhook endpoint or Slack integration (``conflict`` if the name is taken)."""
    _require_destination_admin(actor, kind)
    body = v.json_object(data, "body")
    name = _destination_name(kind, body.get("name"))
    fields = clean_destination(kind, {k: val for k, val in body.items() if k != "name"}, creating=True)
    if kind.model.objects.filter(name=name).exists():
        raise Conflict(f"{kind.label} {name} already exists; PATCH {kind.api_path}/{name} to change it")
    item = kind.model(name=name, **fields)
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:
        raise Conflict(
            f"{kind.label} {name} already exists; PATCH {kind.api_path}/{name} to change it"
        ) from None
    after = {
        **_integration_audit(item),
        "write_only_changed": [s for s in sorted(kind.secrets) if s in fields],
    }
    _audit_integration(actor, "create", item, None, after)
    return item


@transaction.atomic
def destination_update(
    *, actor: Actor, kind: DestinationKind, name: str, data: Any
) -> tuple[Integration, bool]:
    """Change the given fields of a webhook endpoint or Slack integration; ``(item, changed)``.

    The name never changes (routes refer to it); a secret equal to the stored one changes nothing."""
    _require_destination_admin(actor, kind)
    item = kind.model.objects.select_for_update().filter(name=name).first()
    if item is None:
        raise NotFound(f"{kind.label} {name} was not found")
    body = dict(v.json_object(data, "body"))
    if body.pop("name", name) != name:
        raise InvalidArgument(
            f"name cannot change (routes refer to it); create a new {kind.label} instead", field="name"
        )
    fields = clean_destination(kind, body, creating=False)
    changed = [f for f, value in fields.items() if getattr(item, f) != value]
    if not changed:
        return item, False
    before = _integration_audit(item)
    for field in changed:
        setattr(item, field, fields[field])
    item.save()
    after = _integration_audit(item)
    secrets_changed = sorted(f for f in changed if f in kind.secrets)
    if secrets_changed:
        after["write_only_changed"] = secrets_changed
    _audit_integration(actor, "update", item, before, after)
    return item, True


@transaction.atomic
def destination_delete(*, actor: Actor, kind: DestinationKind, name: str) -> None:
    """Delete a webhook endpoint or Slack integration no route names (``invalid_state`` otherwise)."""
    _require_destination_admin(actor, kind)
    item = kind.model.objects.select_for_update().filter(name=name).first()
    if item is None:
        raise NotFound(f"{kind.label} {name} was not found")
    users = selectors.routes_naming(kind.channel, kind.channel_key).get(name, [])
    if users:
        plural = "s" if len(users) > 1 else ""
        raise InvalidState(
            f"{kind.label} {name} is used by route{plural} {', '.join(users)}; remove it from those routes first"
        )
    _audit_integration(actor, "delete", item, _integration_audit(item), None)
    item.delete()


def route_destinations_check(channels: list[dict[str, Any]], *, lock: bool = False) -> None:
    """Every webhook channel names an existing endpoint, every Slack channel that names an
    integration names an existing one (``lock``: and keep them so until the route is saved)."""
    for index, entry in enumerate(channels):
        kind = DESTINATION_KINDS.get(entry.get("type", ""))
        if kind is None:
            continue
        name = entry.get(kind.channel_key)
        if name is None and kind is SLACK_INTEGRATION:
            continue  # the first Slack integration
        if not isinstance(name, str) or not name:
            raise InvalidArgument(
                f"channels[{index}] ({kind.channel}) needs {kind.channel_key}: the name of a {kind.label}",
                field="channels",
            )
        found = kind.model.objects.filter(name=name)
        if (found.select_for_update() if lock else found).first() is None:
            existing = (
                ", ".join(kind.model.objects.order_by("name").values_list("name", flat=True)) or "none yet"
            )
            raise InvalidArgument(
                f"channels[{index}] names {kind.label} {name!r}, which does not exist; create it first "
                f"(POST {kind.api_path}) or name an existing one ({existing})",
                field="channels",
            )
