"""``decision_add_context`` (one event and a batch of 100) and ``decision_evaluate`` (an ``allow``)
under the decision's lock as before docs/performance.md section 29 (A: the same services with the
unlocked attempt switched off, i.e. their locked path, which they keep as their fallback) and without the lock (B: the services as they are, a read and one
compare-and-swap insert), called alternately in one process, so the machine's load falls on both
alike: the service calls only (no HTTP, no door), on PostgreSQL, with the bench's agent and policy.

``DATABASE_URL=postgres://.../<copy of tracemem_hot_run> python -m bench.unlocked_ab [N]`` prints, per
operation, the statements of one call and the median wall-clock and CPU time per call of A and B.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 500
    from bench.common import alternate, bench_agent, bench_agent_client

    bench_agent_client("unlocked-ab")  # Django set up on DATABASE_URL
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from decisions import services
    from policies.services import evaluation
    from tracemem_core.actor import Actor

    agent = bench_agent()
    actor = Actor.for_agent(agent)
    did = services.decision_create(
        actor=actor, intent="bench.run.measure", automation_mode="autonomous"
    ).decision_id
    batch = [{"step": "measuring", "n": i} for i in range(100)]
    inputs = {"amount": 5}  # bench_cap_v1: allow

    unlocked = services.may_append_unlocked

    def locked(call: Callable[[], Any]) -> Callable[[], Any]:
        """``call`` with the unlocked attempt switched off: the public service, on its locked path."""

        def run() -> Any:
            services.may_append_unlocked = lambda actor: False  # type: ignore[assignment]
            try:
                return call()
            finally:
                services.may_append_unlocked = unlocked  # type: ignore[assignment]

        return run

    calls: dict[str, Callable[[], Any]] = {
        "append": lambda: services.decision_add_context(
            actor=actor, decision_id=did, context={"step": "measuring", "n": 1}
        ),
        "batch": lambda: services.decision_add_contexts(actor=actor, decision_id=did, contexts=batch),
        "evaluate": lambda: evaluation.decision_evaluate(
            actor=actor, decision_id=did, policy_id="bench_cap_v1", inputs=inputs
        ),
    }
    pairs = {operation: (locked(call), call) for operation, call in calls.items()}
    for operation, (before, after) in pairs.items():
        count = n if operation != "batch" else max(1, n // 10)
        for name, call in (("A locked", before), ("B unlocked", after)):
            for _ in range(10):
                call()
            with CaptureQueriesContext(connection) as queries:
                call()
            print(
                f"{operation} {name}: {len(queries.captured_queries)} statements: "
                + ", ".join(q["sql"].split(" ")[0] for q in queries.captured_queries)
            )
        alternate(operation, before, after, count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
