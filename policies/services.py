"""Policies (SPEC §7): authoring, publishing, grants, and evaluation inside a decision.

Interfaces other apps use:

* :func:`policy_evaluate_in_decision` — inside the caller's transaction, with the decision locked
  (``decisions.services.decision_lock``); appends the ``evaluate`` event, reports the gating fact.
* :func:`fail_closed` — decorator for the caller's *outermost* service (above
  ``@transaction.atomic``): when an evaluation fails, the caller's transaction rolls back, and
  this decorator then records the failed evaluation in a transaction of its own, and re-raises.
* :func:`register_read_records_resolver` — how ``inputs_ref`` finds the records of a ``read``.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Agent
from audit.services import audit_record
from decisions import services as decision_services
from decisions.models import Decision, EventType, TraceEvent
from policies import engine, selectors
from policies.models import Outcome, Policy, PolicyGrant, PolicyVersion, VersionStatus
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, InvalidState, NotFound, PermissionDenied
from tracemem_core.permissions import has_perm, require_perm
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z
from tracemem_verify.chain import canonical_json

POLICY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")
RULE_NAME_RE = re.compile(r"^[A-Za-z0-9_\-\.]{1,100}$")
MAX_RULES = 200
OUTCOMES = tuple(Outcome.values)

F = TypeVar("F", bound=Callable[..., Any])


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
        raise InvalidArgument(
            f"policy {pid} already exists; edit its draft with PUT /api/v1/admin/policies/{pid}/draft",
            field="policy_id",
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


# --- evaluation ------------------------------------------------------------------------------


def evaluation_result(*, event_id: str | None, pv: PolicyVersion, result: engine.Result) -> dict[str, Any]:
    """The ``decision_evaluate`` result object (SPEC §3)."""
    requires = result.outcome == Outcome.REQUIRES_EXCEPTION
    return {
        "event_id": event_id,
        "policy_id": pv.policy_id,
        "policy_version": pv.version,
        "policy_hash": pv.hash,
        "outcome": result.outcome,
        "rationale": {"message": result.message, "rule": result.rule},
        "allowed": result.outcome == Outcome.ALLOW,
        "requires_approval": requires,
        "approval_route_id": pv.exception_route_id if requires else None,
    }


def decision_variables(decision: Decision) -> dict[str, Any]:
    """The ``decision`` CEL variable."""
    return {
        "intent": decision.intent,
        "automation_mode": decision.automation_mode,
        "actor": decision.actor,
        "metadata": decision.metadata or {},
    }


class PolicyEvaluationFailed(InvalidArgument):
    """An evaluation failed (fail closed). Carries what the trace must record about it."""

    def __init__(self, message: str, *, decision_id: str, actor: Actor, payload: dict[str, Any]) -> None:
        super().__init__(message, field="inputs", details={"policy_id": payload.get("policy_id")})
        self.decision_id = decision_id
        self.actor = actor
        self.payload = payload
        self.recorded = False


_fail_closed_depth: contextvars.ContextVar[int] = contextvars.ContextVar(
    "policies_fail_closed_depth", default=0
)


def _record_failed_evaluation(exc: PolicyEvaluationFailed) -> None:
    with transaction.atomic():
        decision = Decision.objects.select_for_update().get(pk=exc.decision_id)
        if decision.is_terminal:
            return
        event = decision_services.trace_append(
            decision=decision, type=EventType.EVALUATE, actor=exc.actor, payload=exc.payload
        )
    exc.recorded = True
    exc.details["event_id"] = event.event_id


def fail_closed(func: F) -> F:
    """Put above ``@transaction.atomic`` on a service that evaluates policies.

    The service's transaction rolls back on a failed evaluation (so nothing it did survives);
    the outermost decorated service then records the failed evaluation in a transaction of its
    own and re-raises, so the agent gets ``invalid_argument`` and the trace keeps the attempt.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _fail_closed_depth.set(_fail_closed_depth.get() + 1)
        try:
            return func(*args, **kwargs)
        except PolicyEvaluationFailed as exc:
            if _fail_closed_depth.get() == 1 and not exc.recorded:
                _record_failed_evaluation(exc)
            raise
        finally:
            _fail_closed_depth.reset(token)

    return wrapper  # type: ignore[return-value]


def policy_evaluate_in_decision(
    *,
    actor: Actor,
    decision: Decision,
    policy_id: str,
    inputs: dict[str, Any],
    source: str,
    inputs_ref: str | None = None,
) -> dict[str, Any]:
    """Evaluate the latest published version of a policy for a locked decision.

    Call inside the caller's transaction, with ``decision`` locked by ``decision_lock``; the
    caller's outermost service must be wrapped with :func:`fail_closed`. Appends the ``evaluate``
    event (version, hash, outcome, rationale, redacted inputs, source), reports ``deny`` and
    ``requires_exception`` to the decision's gates, and returns the SPEC §3 result object. A
    failed evaluation raises :class:`PolicyEvaluationFailed` (``invalid_argument``).
    """
    decision_services.ensure_not_terminal(decision, "be evaluated")
    pv = selectors.latest_published(policy_id)
    if pv is None:
        raise NotFound(f"policy {policy_id} has no published version; an admin must publish it first")
    now = timezone.now()
    payload: dict[str, Any] = {
        "policy_id": pv.policy_id,
        "policy_version": pv.version,
        "policy_hash": pv.hash,
        "source": source,
    }
    if inputs_ref is None:
        payload["inputs"] = redact(inputs, field="inputs")
    else:
        # Business records never go into the trace (SPEC §3): the read they came from, how many
        # there were and their keyed digest (equal to the read event's ``records_digest``).
        records = inputs.get("records")
        payload["inputs_ref"] = inputs_ref
        payload["rows"] = len(records) if isinstance(records, list) else 0
        payload["records_digest"] = crypto.keyed_digest(records)
    # Identifies the inputs as sent (redaction cuts and masks, so different inputs can redact
    # alike): what a granted exception is matched against (products' _granted_exception).
    payload["inputs_digest"] = crypto.keyed_digest(inputs)
    # The exact ``now`` the conditions saw, so a replay can reproduce the evaluation.
    payload["now"] = iso_z(now)
    try:
        compiled = engine.compiled_for(pv.hash, pv.content())
        result = engine.evaluate(compiled, inputs=inputs, decision=decision_variables(decision), now=now)
    except (engine.EvaluationError, engine.PolicyError) as exc:
        message = (
            f"policy {pv.policy_id} v{pv.version} could not be evaluated: {exc}; nothing was allowed "
            "(the failed attempt is in the trace): fix the inputs and try again"
        )
        payload.update(
            {
                "outcome": "error",
                "error": {
                    "kind": getattr(exc, "kind", "policy_error"),
                    "message": str(exc),
                    "rule": exc.rule,
                },
                "rationale": {"message": str(exc), "rule": exc.rule},
                "allowed": False,
                "requires_approval": False,
                "approval_route_id": None,
            }
        )
        raise PolicyEvaluationFailed(
            message, decision_id=decision.decision_id, actor=actor, payload=payload
        ) from None
    out = evaluation_result(event_id=None, pv=pv, result=result)
    payload.update(
        {k: out[k] for k in ("outcome", "rationale", "allowed", "requires_approval", "approval_route_id")}
    )
    event = decision_services.trace_append(
        decision=decision, type=EventType.EVALUATE, actor=actor, payload=payload
    )
    decision_services.note_policy_outcome(
        decision=decision, outcome=result.outcome, seq=event.seq, exception_route_id=out["approval_route_id"]
    )
    out["event_id"] = event.event_id
    return out


# inputs_ref: the trace keeps a read's data_ref, query, summary and records_digest, not its
# records (SPEC §3). The data-products app registers a resolver that re-reads the records of a read
# event for the acting agent: it re-checks the grant and purpose, refuses (``conflict``) when the
# data changed since the read, and returns None when the records cannot be re-read at all.
ReadRecordsResolver = Callable[[TraceEvent, Actor], "list[dict[str, Any]] | None"]
_read_records_resolvers: list[ReadRecordsResolver] = []


def register_read_records_resolver(resolver: ReadRecordsResolver) -> None:
    if resolver not in _read_records_resolvers:
        _read_records_resolvers.append(resolver)


def _inputs_from_ref(decision: Decision, inputs_ref: Any, actor: Actor) -> dict[str, Any]:
    ref = v.string(inputs_ref, "inputs_ref", max_length=40)
    event = TraceEvent.objects.filter(decision=decision, event_id=ref).first()
    if event is None:
        raise InvalidArgument(
            f"inputs_ref {ref} is not an event of decision {decision.decision_id}; pass the event_id decision_read "
            "returned",
            field="inputs_ref",
        )
    if event.type != EventType.READ:
        raise InvalidArgument(
            f"inputs_ref {ref} is a {event.type} event; it must be a read event", field="inputs_ref"
        )
    records = None
    for resolver in _read_records_resolvers:
        records = resolver(event, actor)
        if records is not None:
            break
    if not isinstance(records, list):
        raise InvalidArgument(
            f"the records of read {ref} are not available any more; pass them as inputs instead",
            field="inputs_ref",
        )
    return {"records": records}


@fail_closed
@transaction.atomic
def decision_evaluate(
    *, actor: Actor, decision_id: Any, policy_id: Any, inputs: Any = None, inputs_ref: Any = None
) -> dict[str, Any]:
    """``decision_evaluate`` (SPEC §3): evaluate a granted policy in the agent's decision."""
    if actor.kind != "agent" or actor.agent is None:
        raise PermissionDenied(
            "only an agent (authenticated with its key) can evaluate policies in a decision"
        )
    pid = v.string(policy_id, "policy_id", max_length=100)
    if (inputs is None) == (inputs_ref is None):
        raise InvalidArgument(
            "pass exactly one of inputs (an object) or inputs_ref (the event_id of an earlier read)",
            field="inputs",
        )
    clean_inputs = v.json_object(inputs, "inputs") if inputs is not None else None
    decision = decision_services.decision_lock(actor=actor, decision_id=decision_id)
    if not selectors.agent_may_evaluate(actor.agent, pid):
        raise PermissionDenied(
            f"policy {pid} is not granted to agent {actor.agent.name}; capabilities_get lists the policies you may "
            "evaluate; ask an admin for a grant"
        )
    if clean_inputs is None:
        clean_inputs = _inputs_from_ref(decision, inputs_ref, actor)
    return policy_evaluate_in_decision(
        actor=actor,
        decision=decision,
        policy_id=pid,
        inputs=clean_inputs,
        source="agent",
        inputs_ref=inputs_ref if inputs is None else None,
    )


# --- the test console ------------------------------------------------------------------------


def _target_version(policy_id: str, version: int | None) -> PolicyVersion:
    if version is not None:
        return selectors.version_of(policy_id, version)
    target = selectors.draft_of(policy_id) or selectors.latest_published(policy_id)
    if target is None:
        raise NotFound(f"policy {policy_id} has no draft or published version to test")
    return target


def policy_test(
    *,
    actor: Actor,
    policy_id: Any,
    inputs: Any,
    decision: Any = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Evaluate the draft (else the published version) against sample inputs; records nothing."""
    _require_author(actor)
    pid = v.string(policy_id, "policy_id", max_length=100)
    selectors.policy_by_id(pid)
    clean_inputs = v.json_object(inputs, "inputs")
    decision_vars = {"intent": "", "automation_mode": "propose", "actor": "", "metadata": {}}
    extra = v.optional_json_object(decision, "decision") or {}
    if "metadata" in extra:
        v.json_object(extra["metadata"], "decision.metadata")
    decision_vars.update(extra)
    pv = _target_version(pid, version)
    compiled = _compile_or_refuse(_definition_of(pv))
    try:
        result = engine.evaluate(compiled, inputs=clean_inputs, decision=decision_vars, now=timezone.now())
    except engine.EvaluationError as exc:
        raise InvalidArgument(
            f"{exc}; an agent would get this error and nothing would be allowed", field="inputs"
        )
    out = evaluation_result(event_id=None, pv=pv, result=result)
    out["status"] = pv.status
    return out


def _recorded_now(event: TraceEvent) -> datetime:
    raw = event.payload.get("now")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
    return event.timestamp


def policy_replay(*, actor: Actor, policy_id: Any, limit: int = 50) -> dict[str, Any]:
    """Replay the last ``limit`` recorded evaluations of the published version through the draft.

    Each recorded evaluation is re-run with its recorded (redacted) inputs, its decision's
    variables and its original time as ``now``; the result lists every one whose outcome would
    flip (an evaluation error under the draft counts as a flip to ``error``).
    """
    _require_author(actor)
    pid = v.string(policy_id, "policy_id", max_length=100)
    selectors.policy_by_id(pid)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise InvalidArgument("limit must be an integer from 1 to 1000", field="limit")
    published = selectors.latest_published(pid)
    draft = selectors.draft_of(pid)
    if published is None or draft is None:
        raise InvalidState(
            f"policy {pid} needs a published version and a draft to replay; save a draft first"
        )
    compiled = _compile_or_refuse(_definition_of(draft))
    events = selectors.recorded_evaluations(pid, published.version, limit)
    flips: list[dict[str, Any]] = []
    skipped = 0
    for event in events:
        if "inputs" not in event.payload:
            # An inputs_ref evaluation: its records were never stored, so it cannot be replayed.
            skipped += 1
            continue
        before = event.payload.get("outcome")
        try:
            result = engine.evaluate(
                compiled,
                inputs=event.payload.get("inputs") or {},
                decision=decision_variables(event.decision),
                now=_recorded_now(event),
            )
            after, rule, error = result.outcome, result.rule, None
        except engine.EvaluationError as exc:
            after, rule, error = "error", exc.rule, str(exc)
        if after != before:
            flips.append(
                {
                    "decision_id": event.decision_id,
                    "event_id": event.event_id,
                    "timestamp": iso_z(event.timestamp),
                    "intent": event.decision.intent,
                    "before": before,
                    "before_rule": (event.payload.get("rationale") or {}).get("rule"),
                    "after": after,
                    "after_rule": rule,
                    "error": error,
                }
            )
    return {
        "policy_id": pid,
        "published_version": published.version,
        "draft_version": draft.version,
        "replayed": len(events) - skipped,
        "skipped": skipped,
        "flipped": len(flips),
        "flips": flips,
    }


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
            if not exists:
                lines.append(f"{prefix}create policy {pid} (draft v1)")
                if not dry_run:
                    policy_create(actor=actor, policy_id=pid, definition=definition)
            elif not same:
                lines.append(f"{prefix}save draft of policy {pid}")
                if not dry_run:
                    policy_draft_save(actor=actor, policy_id=pid, definition=definition)
            else:
                assert latest is not None
                lines.append(f"policy {pid} unchanged (v{latest.version}, {latest.status})")
            needs_publish = publish and (
                not same or (latest is not None and latest.status == VersionStatus.DRAFT)
            )
            if needs_publish:
                if dry_run:
                    _compile_or_refuse(definition)
                    lines.append(f"{prefix}publish policy {pid}")
                else:
                    pv = policy_publish(actor=actor, policy_id=pid)
                    lines.append(f"published policy {pid} v{pv.version} ({pv.hash[:12]})")
            for agent_ref in grants:
                agent = _agent_by_id_or_name(agent_ref)
                if agent is None:
                    raise NotFound(
                        f"policy {pid}: grant to unknown agent {agent_ref!r}; create the agent first"
                    )
                if exists and PolicyGrant.objects.filter(policy_id=pid, agent=agent).exists():
                    continue
                lines.append(f"{prefix}grant policy {pid} to agent {agent.name}")
                if not dry_run:
                    policy_grant(actor=actor, policy_id=pid, agent_id=agent.agent_id)
    return lines


# --- demo data -------------------------------------------------------------------------------

DEMO_POLICY: dict[str, Any] = {
    "policy_id": "code_change_policy_v1",
    "name": "Code change policy",
    "description": "What an agent may change on its own. Refactors need a human exception (SPEC §11).",
    "inputs_schema": {
        "type": "object",
        "properties": {"change_type": {"type": "string"}, "component": {"type": "string"}},
        "required": ["change_type"],
    },
    "rules": [
        {
            "name": "no_destructive_changes",
            "when": 'inputs.change_type in ["delete", "schema_drop"]',
            "outcome": "deny",
            "message": "destructive changes are not made by agents; abort and hand over to a human",
        },
        {
            "name": "refactor_needs_exception",
            "when": 'inputs.change_type == "refactor"',
            "outcome": "requires_exception",
            "message": "refactors (e.g. of user-service) need a reviewer's approval",
        },
        {
            "name": "routine_changes",
            "when": 'inputs.change_type in ["bugfix", "feature", "docs", "test"]',
            "outcome": "allow",
            "message": "routine change",
        },
    ],
    "default_outcome": "deny",
    "publish": True,
}


def seed_demo_policies(*, actor: Actor, agent: Agent) -> list[str]:
    """``seed_demo``: publish ``code_change_policy_v1`` and grant it to the demo agent (idempotent)."""
    return apply_policies(actor=actor, items=[{**DEMO_POLICY, "grants": [agent.agent_id]}], dry_run=False)
