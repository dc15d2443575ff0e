"""Policy evaluation inside a decision (docs/contract/policies.md).

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
from collections.abc import Callable
from types import EllipsisType
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent
from decisions import services as decision_services
from decisions.models import Decision, EventType, TraceEvent
from policies import engine, selectors
from policies.models import Outcome, PolicyVersion
from tracemem_core import crypto, metrics
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound, PermissionDenied
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z

F = TypeVar("F", bound=Callable[..., Any])
# --- evaluation ------------------------------------------------------------------------------


def evaluation_result(*, event_id: str | None, pv: PolicyVersion, result: engine.Result) -> dict[str, Any]:
    """The ``decision_evaluate`` result object (docs/contract/tools.md)."""
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
    published: PolicyVersion | None | EllipsisType = ...,
) -> dict[str, Any]:
    """Evaluate the latest published version of a policy for a locked decision.

    Call inside the caller's transaction, with ``decision`` locked by ``decision_lock``; the
    caller's outermost service must be wrapped with :func:`fail_closed`. Appends the ``evaluate``
    event (version, hash, outcome, rationale, redacted inputs, source), reports ``deny`` and
    ``requires_exception`` to the decision's gates, and returns the docs/contract/tools.md result object. A
    failed evaluation raises :class:`PolicyEvaluationFailed` (``invalid_argument``). ``published``
    is that version (or None) when the caller has just read it (``selectors.evaluation_target``,
    or the lock's ``selectors.EVALUATION_JOIN``).
    """
    payload, out, pv = _evaluated(
        actor=actor,
        decision=decision,
        policy_id=policy_id,
        inputs=inputs,
        source=source,
        inputs_ref=inputs_ref,
        published=published,
    )
    event = decision_services.trace_append(
        decision=decision, type=EventType.EVALUATE, actor=actor, payload=payload
    )
    decision_services.note_policy_outcome(
        decision=decision, outcome=out["outcome"], seq=event.seq, exception_route_id=out["approval_route_id"]
    )
    _count(out["outcome"])
    out["event_id"] = event.event_id
    return out


def _count(outcome: Any) -> None:
    label = str(outcome)
    metrics.on_commit(lambda: metrics.POLICY_EVALUATIONS.labels(label).inc())


def _evaluated(
    *,
    actor: Actor,
    decision: Decision,
    policy_id: str,
    inputs: dict[str, Any],
    source: str,
    inputs_ref: str | None,
    published: PolicyVersion | None | EllipsisType,
) -> tuple[dict[str, Any], dict[str, Any], PolicyVersion]:
    """:func:`policy_evaluate_in_decision` up to the append: the refusals, the evaluation, the
    ``evaluate`` event's payload and the result (its ``event_id`` still None), and the version."""
    decision_services.ensure_not_terminal(decision, "be evaluated")
    pv = selectors.latest_published(policy_id) if isinstance(published, EllipsisType) else published
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
        # Business records never go into the trace (docs/contract/tools.md): the read they came from, how many
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
    return payload, out, pv


# inputs_ref: the trace keeps a read's data_ref, query, summary and records_digest, not its
# records (docs/contract/tools.md). The data-products app registers a resolver that re-reads the records of a read
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


def _not_granted(policy_id: str, agent: Agent) -> PermissionDenied:
    return PermissionDenied(
        f"policy {policy_id} is not granted to agent {agent.name}; capabilities_get lists the policies you may "
        "evaluate; ask an admin for a grant"
    )


@fail_closed
def decision_evaluate(
    *, actor: Actor, decision_id: Any, policy_id: Any, inputs: Any = None, inputs_ref: Any = None
) -> dict[str, Any]:
    """``decision_evaluate`` (docs/contract/tools.md): evaluate a granted policy in the agent's decision.

    On PostgreSQL, with ``inputs`` and no transaction open, first without a lock (two statements, no
    BEGIN/COMMIT: :func:`_evaluate_unlocked`); the locked path of before when that cannot record it."""
    connection.ensure_connection()  # an outage first, as when this was @transaction.atomic
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
    if clean_inputs is not None and decision_services.may_append_unlocked(actor):
        out = _evaluate_unlocked(
            actor=actor, agent=actor.agent, decision_id=decision_id, pid=pid, inputs=clean_inputs
        )
        if out is not None:
            return out
    return _evaluate_locked(
        actor=actor,
        agent=actor.agent,
        decision_id=decision_id,
        pid=pid,
        inputs=clean_inputs,
        inputs_ref=inputs_ref,
    )


def _evaluate_unlocked(
    *, actor: Actor, agent: Agent, decision_id: Any, pid: str, inputs: dict[str, Any]
) -> dict[str, Any] | None:
    """``decision_evaluate`` without a lock: the decision, the grant and the latest published version
    read in one statement (``selectors.EVALUATION_JOIN``'s read), the evaluation, and the event
    inserted by one statement that commits by itself only if the decision's row is unchanged, the
    grant still there and the version still the latest published (``selectors.EVALUATION_UNCHANGED``).
    None where the locked path must answer: the decision awaits an approval, the outcome must be noted
    on the decision (deny, requires_exception: its UPDATE goes with the insert, under the lock), or
    something changed since the read (the locked path reads and evaluates again). Refusals are the
    locked path's, in its order."""
    read = decision_services.decision_read_unlocked(
        actor=actor,
        decision_id=decision_id,
        join=selectors.EVALUATION_JOIN,
        params=selectors.evaluation_join_params(pid),
    )
    if read is None:
        return None
    decision, version, joined = read
    granted, published = selectors.evaluation_target_of(joined)
    if not granted:
        raise _not_granted(pid, agent)
    payload, out, pv = _evaluated(
        actor=actor,
        decision=decision,
        policy_id=pid,
        inputs=inputs,
        source="agent",
        inputs_ref=None,
        published=published,
    )
    if out["outcome"] in (Outcome.DENY, Outcome.REQUIRES_EXCEPTION):
        return None
    events = decision_services.append_unchanged(
        decision=decision,
        version=version,
        type=EventType.EVALUATE,
        actor=actor,
        payloads=[payload],
        unchanged=selectors.EVALUATION_UNCHANGED,
        params=selectors.evaluation_unchanged_params(pid, pv.version),
    )
    if events is None:
        return None
    _count(out["outcome"])  # committed: counted at once
    out["event_id"] = events[0].event_id
    return out


@transaction.atomic
def _evaluate_locked(
    *, actor: Actor, agent: Agent, decision_id: Any, pid: str, inputs: dict[str, Any] | None, inputs_ref: Any
) -> dict[str, Any]:
    clean_inputs = inputs
    # The lock reads the grant and the published version too (one statement on PostgreSQL).
    decision, joined = decision_services.decision_lock_with(
        actor=actor,
        decision_id=decision_id,
        join=selectors.EVALUATION_JOIN,
        params=selectors.evaluation_join_params(pid),
    )
    if joined is None:
        granted, published = selectors.evaluation_target(agent, pid)
    else:
        granted, published = selectors.evaluation_target_of(joined)
    if not granted:
        raise _not_granted(pid, agent)
    if clean_inputs is None:
        clean_inputs = _inputs_from_ref(decision, inputs_ref, actor)
    return policy_evaluate_in_decision(
        actor=actor,
        decision=decision,
        policy_id=pid,
        inputs=clean_inputs,
        source="agent",
        inputs_ref=inputs_ref if inputs is None else None,
        published=published,
    )
