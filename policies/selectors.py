"""Reads of policies, versions, grants and recorded evaluations."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from agents.models import Agent
from decisions.models import EventType, TraceEvent
from decisions.selectors import LockJoin, Unchanged
from policies.models import Policy, PolicyGrant, PolicyVersion, VersionStatus
from tracemem_core.actor import Actor
from tracemem_core.errors import NotFound
from tracemem_core.permissions import require_reader
from tracemem_core.postgresql import prepared_cursor


def ensure_policy_reader(actor: Actor) -> None:
    """Policies, their drafts and grants are read with a policies permission (docs/security.md)."""
    require_reader(actor, "policies")


def policies_all() -> QuerySet[Policy]:
    return Policy.objects.all().prefetch_related("versions").order_by("policy_id")


def policy_by_id(policy_id: str) -> Policy:
    try:
        return Policy.objects.get(pk=policy_id)
    except Policy.DoesNotExist:
        raise NotFound(
            f"policy {policy_id} was not found; list policies with GET /api/v1/admin/policies"
        ) from None


def policy_versions(policy_id: str) -> QuerySet[PolicyVersion]:
    return PolicyVersion.objects.filter(policy_id=policy_id).order_by("-version")


def version_of(policy_id: str, version: int) -> PolicyVersion:
    try:
        return PolicyVersion.objects.get(policy_id=policy_id, version=version)
    except PolicyVersion.DoesNotExist:
        raise NotFound(f"policy {policy_id} has no version {version}") from None


def latest_published(policy_id: str) -> PolicyVersion | None:
    return (
        PolicyVersion.objects.filter(policy_id=policy_id, status=VersionStatus.PUBLISHED)
        .order_by("-version")
        .first()
    )


def draft_of(policy_id: str) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(policy_id=policy_id, status=VersionStatus.DRAFT).first()


def latest_version(policy_id: str) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(policy_id=policy_id).order_by("-version").first()


def agent_may_evaluate(agent: Agent, policy_id: str) -> bool:
    return PolicyGrant.objects.filter(agent=agent, policy_id=policy_id).exists()


# decision_evaluate's two reads — is the policy granted to the agent, and its latest published
# version — in one plain statement: building the two ORM queries cost more CPU than running them,
# and it saves a round trip (issue 17, docs/performance.md §9).
_PV_FIELDS = PolicyVersion._meta.concrete_fields
_PV_ATTNAMES = [f.attname for f in _PV_FIELDS]
_PV_CONVERTERS = [(i, f.from_db_value) for i, f in enumerate(_PV_FIELDS) if hasattr(f, "from_db_value")]


def _granted(agent: str) -> str:
    """Whether ``agent`` (an SQL expression) has a grant for one policy (its ``%s``)."""
    return f"EXISTS (SELECT 1 FROM {PolicyGrant._meta.db_table} WHERE agent_id = {agent} AND policy_id = %s)"


def _latest_published(columns: str) -> str:
    """``columns`` of one policy's latest published version (its ``%s``: the policy, the status)."""
    return (
        f"SELECT {columns} FROM {PolicyVersion._meta.db_table}"
        " WHERE policy_id = %s AND status = %s ORDER BY version DESC LIMIT 1"
    )


def _evaluation_columns(agent: str) -> str:
    """The grant of ``agent`` (an SQL expression) for one policy, then the latest published version's
    columns (from :data:`_LATEST_PUBLISHED`'s ``pv``)."""
    return f"{_granted(agent)}, " + ", ".join(f'pv."{f.column}"' for f in _PV_FIELDS)


_LATEST_PUBLISHED = f"LEFT JOIN LATERAL ({_latest_published('*')}) AS pv ON true"
_EVALUATION_SQL = f"SELECT {_evaluation_columns('%s')} FROM (SELECT 1) AS one {_LATEST_PUBLISHED}"


def evaluation_target(agent: Agent, policy_id: str) -> tuple[bool, PolicyVersion | None]:
    """``(agent_may_evaluate(agent, policy_id), latest_published(policy_id))``, in one round trip
    on PostgreSQL."""
    if connection.vendor != "postgresql":
        return agent_may_evaluate(agent, policy_id), latest_published(policy_id)
    with prepared_cursor() as cursor:
        cursor.execute(_EVALUATION_SQL, [agent.agent_id, *evaluation_join_params(policy_id)])
        return evaluation_target_of(list(cursor.fetchone()))


def evaluation_target_of(values: list[Any]) -> tuple[bool, PolicyVersion | None]:
    """What :func:`evaluation_target` answers, from its statement's columns (or
    :data:`EVALUATION_JOIN`'s): the grant, then the version's columns."""
    granted, *values = values
    if values[0] is None:  # no published version: the LEFT JOIN's row is all NULL
        return bool(granted), None
    for index, convert in _PV_CONVERTERS:
        values[index] = convert(values[index], None, connection)
    return bool(granted), PolicyVersion.from_db(connection.alias, _PV_ATTNAMES, values)


# decision_evaluate's lock (decisions' LockJoin): the statement that locks the agent's decision reads
# the grant and the latest published version too, with evaluation_target's subqueries, so the call
# costs one round trip less (issue 17, docs/performance.md). The grant is the decision's agent's,
# which is the calling agent (the lock reads only the agent's own decisions).
EVALUATION_JOIN = LockJoin(columns=_evaluation_columns("d.agent_id"), joins=_LATEST_PUBLISHED)


def evaluation_join_params(policy_id: str) -> list[Any]:
    """The parameters of :data:`EVALUATION_JOIN`."""
    return [policy_id, policy_id, VersionStatus.PUBLISHED.value]


# decision_evaluate without a lock (decisions' Unchanged, docs/performance.md §29): the statement that
# inserts the evaluate event only if the decision is unchanged also checks that the grant is still
# there and the version evaluated is still the latest published. These are read from the statement's
# snapshot, so it never waits for the decision's row (SKIP LOCKED): after a wait they would be stale
# (a grant revoked during the wait honoured); a held row inserts nothing and the locked path waits.
EVALUATION_UNCHANGED = Unchanged(
    condition=f"{_granted('d.agent_id')} AND ({_latest_published('version')}) = %s",
    wait=False,
)


def evaluation_unchanged_params(policy_id: str, version: int) -> list[Any]:
    """The parameters of :data:`EVALUATION_UNCHANGED`: the policy and the version evaluated."""
    return [policy_id, policy_id, VersionStatus.PUBLISHED.value, version]


def policy_grants(policy_id: str) -> QuerySet[PolicyGrant]:
    return PolicyGrant.objects.filter(policy_id=policy_id).select_related("agent").order_by("agent__name")


def granted_policies(agent: Agent) -> list[dict[str, Any]]:
    """``capabilities_get.permissions.policies``: granted policies that have a published version."""
    rows: list[dict[str, Any]] = []
    for grant in PolicyGrant.objects.filter(agent=agent).order_by("policy_id"):
        published = latest_published(grant.policy_id)
        if published is not None:
            rows.append({"policy_id": grant.policy_id, "name": published.name, "version": published.version})
    return rows


def recorded_evaluations(policy_id: str, version: int, limit: int) -> list[TraceEvent]:
    """The last ``limit`` successful evaluations of one policy version, newest first."""
    return list(
        TraceEvent.objects.filter(
            type=EventType.EVALUATE,
            payload__policy_id=policy_id,
            payload__policy_version=version,
        )
        .exclude(payload__outcome="error")
        .select_related("decision")
        .order_by("-timestamp", "-seq")[:limit]
    )


def recent_evaluations(policy_id: str, limit: int = 20) -> list[TraceEvent]:
    """The latest evaluations of a policy, any version and outcome (errors included), newest first."""
    return list(
        TraceEvent.objects.filter(type=EventType.EVALUATE, payload__policy_id=policy_id)
        .select_related("decision")
        .order_by("-timestamp", "-seq")[:limit]
    )


def version_diff(older: PolicyVersion, newer: PolicyVersion) -> list[str]:
    """A unified diff of two versions' content, as indented JSON lines."""

    def lines(pv: PolicyVersion) -> list[str]:
        return json.dumps(pv.content(), indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return list(
        difflib.unified_diff(
            lines(older), lines(newer), f"v{older.version}", f"v{newer.version}", lineterm=""
        )
    )
