"""``decision_create`` and ``decision_evaluate`` as they were before docs/performance.md section 26
(A) and as they are (B), called alternately in one process, so the machine's load falls on both
alike: the service calls only (no HTTP, no door), on PostgreSQL, with the bench's agent and policy.

``DATABASE_URL=postgres://.../<copy of tracemem_hot_run> python -m bench.service_ab [N]`` prints, per
operation, the median wall-clock and CPU time per call of A and B and the statements of one call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 500
    from bench.common import alternate, bench_agent, bench_agent_client

    bench_agent_client("service-ab")  # Django set up on DATABASE_URL
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from decisions import services
    from decisions.models import AutomationMode, Decision, DecisionStatus, EventType
    from policies import selectors
    from policies.services import evaluation
    from tracemem_core import telemetry
    from tracemem_core import validation as v
    from tracemem_core.actor import Actor
    from tracemem_core.postgresql import prepared_cursor
    from tracemem_core.redaction import redact

    agent = bench_agent()
    actor = Actor.for_agent(agent)

    @transaction.atomic
    def create_before(intent: Any, automation_mode: Any) -> Decision:
        """decision_create of main 85d1554: BEGIN, the row, the created event, COMMIT."""
        clean_intent = services.validate_intent(intent)
        mode = v.choice(automation_mode, "automation_mode", AutomationMode.values)
        who = agent.agent_id
        clean_metadata = redact(v.optional_json_object(None, "metadata") or {}, field="metadata")
        decision = Decision(
            agent=agent,
            intent=clean_intent,
            automation_mode=mode,
            actor=who,
            instance=None,
            version=None,
            metadata=clean_metadata,
        )
        with prepared_cursor() as cursor:
            cursor.execute(services._INSERT_DECISION_SQL, services._decision_values(decision))
        decision._state.adding = False
        telemetry.annotate(decision_id=decision.decision_id, agent_id=decision.agent_id)
        services._count_status(DecisionStatus.OPEN)
        services.trace_append(
            decision=decision,
            type=EventType.CREATED,
            actor=actor,
            payload={
                "intent": decision.intent,
                "automation_mode": decision.automation_mode,
                "actor": decision.actor,
                "instance": None,
                "version": None,
                "metadata": clean_metadata,
            },
        )
        return decision

    @evaluation.fail_closed
    @transaction.atomic
    def evaluate_before(decision_id: str, policy_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """decision_evaluate of main 85d1554: the lock, then the grant and version in a statement of
        their own."""
        pid = v.string(policy_id, "policy_id", max_length=100)
        clean_inputs = v.json_object(inputs, "inputs")
        decision = services.decision_lock(actor=actor, decision_id=decision_id)
        granted, published = selectors.evaluation_target(agent, pid)
        assert granted
        return evaluation.policy_evaluate_in_decision(
            actor=actor,
            decision=decision,
            policy_id=pid,
            inputs=clean_inputs,
            source="agent",
            published=published,
        )

    did = services.decision_create(
        actor=actor, intent="bench.run.measure", automation_mode="autonomous"
    ).decision_id
    inputs = {"amount": 5}
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "create": (
            lambda: create_before("bench.run.measure", "autonomous"),
            lambda: services.decision_create(
                actor=actor, intent="bench.run.measure", automation_mode="autonomous"
            ),
        ),
        "evaluate": (
            lambda: evaluate_before(did, "bench_cap_v1", inputs),
            lambda: evaluation.decision_evaluate(
                actor=actor, decision_id=did, policy_id="bench_cap_v1", inputs=inputs
            ),
        ),
    }
    for operation, (before, after) in pairs.items():
        for name, call in (("A before", before), ("B after", after)):
            for _ in range(10):
                call()
            with CaptureQueriesContext(connection) as queries:
                call()
            print(
                f"{operation} {name}: {len(queries.captured_queries)} statements: "
                + ", ".join(q["sql"].split(" ")[0] for q in queries.captured_queries)
            )
        alternate(operation, before, after, n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
