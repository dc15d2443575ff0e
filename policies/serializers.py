"""Result objects of the policy tools and the policy admin API, shared by every door."""

from __future__ import annotations

from typing import Any

from policies.models import Policy, PolicyGrant, PolicyVersion
from tracemem_core.timefmt import iso_z


def version_out(pv: PolicyVersion) -> dict[str, Any]:
    return {
        "policy_id": pv.policy_id,
        "version": pv.version,
        "status": pv.status,
        "hash": pv.hash or None,
        "name": pv.name,
        "description": pv.description,
        "inputs_schema": pv.inputs_schema,
        "rules": pv.rules,
        "default_outcome": pv.default_outcome,
        "exception_route_id": pv.exception_route_id,
        "created_at": iso_z(pv.created_at),
        "updated_at": iso_z(pv.updated_at),
        "published_at": iso_z(pv.published_at),
        "published_by": pv.published_by or None,
    }


def policy_summary_out(policy: Policy) -> dict[str, Any]:
    versions = sorted(policy.versions.all(), key=lambda pv: -pv.version)
    published = next((pv for pv in versions if pv.status == "published"), None)
    draft = next((pv for pv in versions if pv.status == "draft"), None)
    latest = versions[0] if versions else None
    return {
        "policy_id": policy.policy_id,
        "name": latest.name if latest else policy.policy_id,
        "status": published.status if published else (latest.status if latest else "draft"),
        "version": published.version if published else None,
        "hash": published.hash if published else None,
        "draft_version": draft.version if draft else None,
    }


def policy_detail_out(
    policy: Policy, versions: list[PolicyVersion], grants: list[PolicyGrant]
) -> dict[str, Any]:
    return {
        **policy_summary_out(policy),
        "versions": [version_out(pv) for pv in versions],
        "grants": [grant_out(g) for g in grants],
    }


def grant_out(grant: PolicyGrant) -> dict[str, Any]:
    return {
        "policy_id": grant.policy_id,
        "agent_id": grant.agent_id,
        "agent_name": grant.agent.name,
        "created_at": iso_z(grant.created_at),
    }
