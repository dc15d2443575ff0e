"""Policies (docs/contract/policies.md): definitions, drafts, publishing, retiring and grants."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Agent
from audit.services import audit_record
from policies import engine, selectors
from policies.models import Outcome, Policy, PolicyGrant, PolicyVersion, VersionStatus
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import Conflict, InvalidArgument, InvalidState, NotFound
from tracemem_core.permissions import has_perm, require_perm
from tracemem_verify.chain import canonical_json

POLICY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")
RULE_NAME_RE = re.compile(r"^[A-Za-z0-9_\-\.]{1,100}$")
MAX_RULES = 200
OUTCOMES = tuple(Outcome.values)
# --- content --------------------------------------------------------------------------------


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of a version's content."""
    return hashlib.sha256(canonical_json(content)).hexdigest()


def _require_author(actor: Actor) -> None:
    """Testing a draft or replaying recorded evaluations through it is for who writes or publishes
    policies (a replay shows recorded, redacted inputs)."""
    if not has_perm(actor, "policies.publish_policies"):
        require_perm(actor, "policies.define_policies")


def _version_audit(pv: PolicyVersion | None) -> dict[str, Any] | None:
    if pv is None:
        return None
    return {**pv.content(), "status": pv.status, "hash": pv.hash or None}


def _audit_policy(actor: Actor, action: str, policy_id: str, before: Any, after: Any) -> None:
    audit_record(
        actor=actor, action=action, object_type="policy", object_id=policy_id, before=before, after=after
    )


def clean_definition(data: Any) -> dict[str, Any]:
    """Shape-check a policy definition (not its CEL, which publishing compiles)."""
    data = v.json_object(data, "policy")
    name = v.string(data.get("name"), "name", max_length=200)
    description = v.optional_string(data.get("description"), "description", max_length=10_000) or ""
    schema = data.get("inputs_schema")
    if schema is not None and not isinstance(schema, dict | bool):
        raise InvalidArgument("inputs_schema must be a JSON Schema object or null", field="inputs_schema")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise InvalidArgument("rules must be a list of {name, when, outcome, message}", field="rules")
    if len(raw_rules) > MAX_RULES:
        raise InvalidArgument(f"a policy has at most {MAX_RULES} rules", field="rules")
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, rule in enumerate(raw_rules):
        where = f"rules[{i}]"
        rule = v.json_object(rule, where)
        unknown = sorted(set(rule) - {"name", "when", "outcome", "message"})
        if unknown:
            raise InvalidArgument(
                f"{where} has unknown keys {', '.join(unknown)}; a rule is {{name, when, outcome, message}}",
                field=where,
            )
        rule_name = v.string(rule.get("name"), f"{where}.name", max_length=100)
        if not RULE_NAME_RE.match(rule_name):
            raise InvalidArgument(
                f"{where}.name must be letters, digits, _ - . (got {rule_name!r})", field=f"{where}.name"
            )
        if rule_name in seen:
            raise InvalidArgument(f"rule name {rule_name!r} is used twice; names must be unique", field=where)
        seen.add(rule_name)
        rules.append(
            {
                "name": rule_name,
                "when": v.string(rule.get("when"), f"{where}.when", max_length=10_000),
                "outcome": v.choice(rule.get("outcome"), f"{where}.outcome", OUTCOMES),
                "message": v.optional_string(rule.get("message"), f"{where}.message", max_length=2000) or "",
            }
        )
    default = data.get("default_outcome")
    default_outcome = (
        Outcome.DENY.value if default is None else v.choice(default, "default_outcome", OUTCOMES)
    )
    route = v.optional_string(data.get("exception_route_id"), "exception_route_id", max_length=100)
    return {
        "name": name,
        "description": description,
        "inputs_schema": schema,
        "rules": rules,
        "default_outcome": default_outcome,
        "exception_route_id": route or None,
    }


def _definition_of(pv: PolicyVersion) -> dict[str, Any]:
    content = pv.content()
    return {
        k: content[k]
        for k in ("name", "description", "inputs_schema", "rules", "default_outcome", "exception_route_id")
    }


def _compile_or_refuse(definition: dict[str, Any]) -> engine.CompiledPolicy:
    try:
        return engine.compile_policy(definition)
    except engine.PolicyError as exc:
        details: dict[str, Any] = {}
        if exc.rule:
            details["rule"] = exc.rule
        if exc.position:
            details["position"] = exc.position
        raise InvalidArgument(
            f"{exc}; fix the draft and publish again",
            field="rules" if exc.rule else "inputs_schema",
            details=details,
        ) from None


def definition_problems(definition: dict[str, Any]) -> list[str]:
    """What would stop a (clean) definition from publishing; empty when it would publish."""
    try:
        engine.compile_policy(definition)
    except engine.PolicyError as exc:
        return [str(exc)]
    return []


# --- authoring ------------------------------------------------------------------------------


@transaction.atomic
def policy_create(*, actor: Actor, policy_id: Any, definition: Any) -> PolicyVersion:
    """Create a policy with its first draft (version 1)."""
    require_perm(actor, "policies.define_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    if not POLICY_ID_RE.match(pid):
        raise InvalidArgument(
            f"policy_id must be a lowercase slug like discount_cap_v1 ([a-z0-9_-]); got {pid!r}",
            field="policy_id",
        )
    clean = clean_definition(definition)
    policy, created = Policy.objects.get_or_create(policy_id=pid)
    if not created:
        # Creating something that exists is 409 conflict, as for every other kind (docs/contract/interfaces.md).
        raise Conflict(
            f"policy {pid} already exists; edit its draft with PUT /api/v1/admin/policies/{pid}/draft",
            details={"field": "policy_id"},
        )
    pv = PolicyVersion.objects.create(policy=policy, version=1, **clean)
    _audit_policy(actor, "policy.create", pid, None, _version_audit(pv))
    return pv


@transaction.atomic
def policy_draft_save(*, actor: Actor, policy_id: Any, definition: Any) -> PolicyVersion:
    """Save the policy's draft; when only published versions exist this creates the next draft."""
    require_perm(actor, "policies.define_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    clean = clean_definition(definition)
    policy = Policy.objects.select_for_update().filter(pk=pid).first()
    if policy is None:
        raise NotFound(f"policy {pid} was not found; create it with POST /api/v1/admin/policies")
    draft = (
        PolicyVersion.objects.select_for_update().filter(policy=policy, status=VersionStatus.DRAFT).first()
    )
    before = _version_audit(draft)
    if draft is None:
        latest = PolicyVersion.objects.filter(policy=policy).aggregate(m=Max("version"))["m"] or 0
        draft = PolicyVersion.objects.create(policy=policy, version=latest + 1, **clean)
    else:
        for key, value in clean.items():
            setattr(draft, key, value)
        draft.updated_at = timezone.now()
        draft.save()
    _audit_policy(actor, "policy.draft_save", pid, before, _version_audit(draft))
    return draft


@transaction.atomic
def policy_publish(*, actor: Actor, policy_id: Any) -> PolicyVersion:
    """Compile and freeze the draft; the previously published version is retired."""
    require_perm(actor, "policies.publish_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    policy = Policy.objects.select_for_update().filter(pk=pid).first()
    if policy is None:
        raise NotFound(f"policy {pid} was not found")
    draft = (
        PolicyVersion.objects.select_for_update().filter(policy=policy, status=VersionStatus.DRAFT).first()
    )
    if draft is None:
        raise InvalidState(f"policy {pid} has no draft to publish; save a draft first (PUT .../draft)")
    compiled = _compile_or_refuse(_definition_of(draft))
    before = _version_audit(draft)
    retired = list(
        PolicyVersion.objects.filter(policy=policy, status=VersionStatus.PUBLISHED).values_list(
            "version", flat=True
        )
    )
    PolicyVersion.objects.filter(policy=policy, status=VersionStatus.PUBLISHED).update(
        status=VersionStatus.RETIRED
    )
    draft.hash = content_hash(draft.content())
    draft.status = VersionStatus.PUBLISHED
    draft.published_at = timezone.now()
    draft.published_by = actor.name
    draft.save()
    _audit_policy(
        actor, "policy.publish", pid, before, {**(_version_audit(draft) or {}), "retired_versions": retired}
    )
    # Warm the cache for this process; other processes compile on first use (keyed by hash).
    engine.cache_put(draft.hash, compiled)
    return draft


@transaction.atomic
def policy_retire(*, actor: Actor, policy_id: Any) -> PolicyVersion:
    """Withdraw the published version: agents can no longer evaluate the policy until a draft is published."""
    require_perm(actor, "policies.publish_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    policy = Policy.objects.select_for_update().filter(pk=pid).first()
    if policy is None:
        raise NotFound(f"policy {pid} was not found")
    published = PolicyVersion.objects.filter(policy=policy, status=VersionStatus.PUBLISHED).first()
    if published is None:
        raise InvalidState(f"policy {pid} has no published version to retire")
    before = _version_audit(published)
    published.status = VersionStatus.RETIRED
    published.save(update_fields=["status"])
    _audit_policy(actor, "policy.retire", pid, before, _version_audit(published))
    return published


@transaction.atomic
def policy_grant(*, actor: Actor, policy_id: Any, agent_id: Any) -> PolicyGrant:
    """Allow an agent to evaluate a policy (idempotent)."""
    require_perm(actor, "policies.grant_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    aid = v.string(agent_id, "agent_id", max_length=100)
    policy = selectors.policy_by_id(pid)
    agent = _agent_by_id_or_name(aid)
    if agent is None:
        raise NotFound(f"agent {aid} was not found; pass an agent_id (agent_...) or an agent name")
    grant, created = PolicyGrant.objects.get_or_create(
        policy=policy, agent=agent, defaults={"created_by": actor.user if actor.kind == "user" else None}
    )
    if created:
        _audit_policy(actor, "policy.grant", pid, None, {"agent_id": agent.agent_id, "agent": agent.name})
    return grant


@transaction.atomic
def policy_grant_revoke(*, actor: Actor, policy_id: Any, agent_id: Any) -> bool:
    """Withdraw an agent's grant; True if there was one."""
    require_perm(actor, "policies.grant_policies")
    pid = v.string(policy_id, "policy_id", max_length=100)
    aid = v.string(agent_id, "agent_id", max_length=100)
    agent = _agent_by_id_or_name(aid)
    if agent is None:
        return False
    deleted, _ = PolicyGrant.objects.filter(policy_id=pid, agent=agent).delete()
    if deleted:
        _audit_policy(actor, "policy.revoke", pid, {"agent_id": agent.agent_id, "agent": agent.name}, None)
    return deleted > 0


def _agent_by_id_or_name(ref: str) -> Agent | None:
    """Grants name an agent by id (``agent_...``) or by name, granting and revoking alike."""
    return Agent.objects.filter(pk=ref).first() or Agent.objects.filter(name=ref).first()
