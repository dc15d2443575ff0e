"""Our plain hot statements, client-side bound (the ordinary cursor) against prepared, in-process.

``DATABASE_URL=postgres://.../<db> python -m bench.prepared_statements [N=2000] [BLOCKS=6]`` on the
database a ``bench hotpath`` run leaves behind (``<name>_hot_run``: it has ``bench-agent`` and its
policy ``bench_cap_v1``). Each block runs N executions of each statement twice, once with the
connection's ``prepare_threshold`` cleared (what ``TRACEMEM_DB_PREPARE=0`` gives: the ordinary,
client-side-binding cursor) and once as configured (prepared), in alternating order, and measures
per execution this process's CPU, the PostgreSQL backend's CPU (its ``/proc`` entry: the server must
be on this machine) and the median wall time. Prints the median of the blocks
(docs/performance.md section 19).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import bench_agent, cpu_seconds


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    blocks = int(argv[1]) if len(argv) > 1 else 6
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
    import django

    django.setup()
    from django.db import connection

    from decisions import selectors as decision_selectors
    from decisions import services as decision_services
    from policies import selectors as policy_selectors
    from tracemem_core.actor import Actor
    from tracemem_core.postgresql import prepared_cursor

    agent = bench_agent()
    actor = Actor.for_agent(agent)
    decision_id = decision_services.decision_create(
        actor=actor, intent="bench.statements.measure", automation_mode="autonomous"
    ).decision_id
    for step in range(9):
        decision_services.decision_add_context(actor=actor, decision_id=decision_id, context={"step": step})
    connection.ensure_connection()
    raw: Any = connection.connection
    configured = raw.prepare_threshold
    if configured is None:
        raise SystemExit(
            "this connection prepares nothing: unset TRACEMEM_DB_PREPARE=0 and DB_CONN_MAX_AGE=0"
        )
    backend = f"/proc/{raw.info.backend_pid}/stat"
    if not os.path.exists(backend):
        raise SystemExit("PostgreSQL is not on this machine: its CPU cannot be read")

    def backend_cpu() -> float:
        return cpu_seconds([raw.info.backend_pid])

    def statement(sql: str, params: list[Any]) -> Callable[[], Any]:
        def run() -> Any:
            with prepared_cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()

        return run

    statements = {
        "an agent's decision (read)": statement(decision_selectors._READ_SQL, [decision_id, agent.agent_id]),
        "evaluation target": statement(
            policy_selectors._EVALUATION_SQL, [agent.agent_id, "bench_cap_v1", "bench_cap_v1", "published"]
        ),
        "trace page (10 events)": statement(decision_selectors._TRACE_JSON_SQL, [decision_id, 0, 10, 500]),
    }
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for block in range(blocks):
        for mode in ("client-bound", "prepared") if block % 2 == 0 else ("prepared", "client-bound"):
            raw.prepare_threshold = None if mode == "client-bound" else configured
            for name, run in statements.items():
                for _ in range(10):
                    run()
                walls = []
                cpu, pg = time.process_time(), backend_cpu()
                for _ in range(n):
                    started = time.perf_counter()
                    run()
                    walls.append(time.perf_counter() - started)
                results.setdefault((name, mode), []).append(
                    (
                        (time.process_time() - cpu) / n * 1e6,
                        (backend_cpu() - pg) / n * 1e6,
                        statistics.median(walls) * 1e6,
                    )
                )
    raw.prepare_threshold = configured
    print(
        f"{'statement':28s} {'binding':13s} {'Python CPU':>11s} {'PostgreSQL CPU':>15s} {'wall p50':>9s}  (us)"
    )
    for name in statements:
        for mode in ("client-bound", "prepared"):
            rows = results[(name, mode)]
            python, postgres, wall = (statistics.median(row[i] for row in rows) for i in range(3))
            print(f"{name:28s} {mode:13s} {python:11.0f} {postgres:15.0f} {wall:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
