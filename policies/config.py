"""``apply_config`` section ``policies``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from policies import selectors
from policies.models import Policy, PolicyGrant, VersionStatus
from policies.services.authoring import (
    _agent_by_id_or_name,
    _definition_of,
    clean_definition,
    policy_create,
    policy_draft_save,
    policy_grant,
    policy_publish,
)
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound
from tracemem_core.permissions import require_perm

# --- apply_config --------------------------------------------------------------------------


def apply_policies(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """The ``policies`` section of ``manage.py apply_config`` (see docs/apply_config.md).

    Each item: ``{policy_id, name, description?, inputs_schema?, rules, default_outcome?,
    exception_route_id?, publish?: bool, grants?: [agent name or id]}``. Idempotent: an item
    equal to the latest version changes nothing.
    """
    require_perm(actor, "policies.define_policies")
    if not isinstance(items, list):
        raise InvalidArgument("policies must be a list of policy definitions", field="policies")
    lines: list[str] = []
    for item in items:
        item = v.json_object(item, "policies[]")
        pid = v.string(item.get("policy_id"), "policy_id", max_length=100)
        definition = clean_definition(
            {k: val for k, val in item.items() if k not in ("policy_id", "publish", "grants")}
        )
        publish = bool(item.get("publish", False))
        grants = item.get("grants") or []
        if not isinstance(grants, list) or not all(isinstance(g, str) and g for g in grants):
            raise InvalidArgument(
                f"policy {pid}: grants must be a list of agent ids or names", field="grants"
            )
        prefix = "[dry-run] would " if dry_run else ""
        with transaction.atomic():
            exists = Policy.objects.filter(pk=pid).exists()
            latest = selectors.latest_version(pid) if exists else None
            # A retired version is not "the same": re-applying the file brings the policy back.
            same = (
                latest is not None
                and latest.status != VersionStatus.RETIRED
                and _definition_of(latest) == definition
            )
            if latest is None:
                policy_create(actor=actor, policy_id=pid, definition=definition)
                lines.append(f"{prefix}create policy {pid} (draft v1)")
            elif not same:
                policy_draft_save(actor=actor, policy_id=pid, definition=definition)
                lines.append(f"{prefix}save draft of policy {pid}")
            else:
                lines.append(f"policy {pid} unchanged (v{latest.version}, {latest.status})")
            needs_publish = publish and (
                not same or (latest is not None and latest.status == VersionStatus.DRAFT)
            )
            if needs_publish:
                pv = policy_publish(actor=actor, policy_id=pid)
                lines.append(f"{prefix}publish policy {pid} v{pv.version} ({pv.hash[:12]})")
            for agent_ref in grants:
                agent = _agent_by_id_or_name(agent_ref)
                if agent is None:
                    raise NotFound(
                        f"policy {pid}: grant to unknown agent {agent_ref!r}; create the agent first"
                    )
                if exists and PolicyGrant.objects.filter(policy_id=pid, agent=agent).exists():
                    continue
                policy_grant(actor=actor, policy_id=pid, agent_id=agent.agent_id)
                lines.append(f"{prefix}grant policy {pid} to agent {agent.name}")
    return lines
