"""The policy test console: run a version against given inputs, replay recent decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from decisions.models import TraceEvent
from policies import engine, selectors
from policies.models import PolicyVersion
from policies.services.authoring import _compile_or_refuse, _definition_of, _require_author
from policies.services.evaluation import decision_variables, evaluation_result
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, InvalidState, NotFound
from tracemem_core.timefmt import iso_z

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
