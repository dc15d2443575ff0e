"""Profile one hot-path operation in-process (Django test client, PostgreSQL), with pyinstrument.

``DATABASE_URL=postgres://.../<db> python -m bench.profile_hotpath OPERATION [N] [--time]`` where
OPERATION is ``append``, ``batch``, ``create``, ``evaluate``, ``trace``, ``mcp``, ``get``
(``decision_get``: a request's cost without a payload), ``mcp-trace`` (``decision_trace`` of 1,000
events over ``/mcp``) or ``verify``. Prints the SQL statements of one call (the round trips), then
pyinstrument's call tree over N calls (wall clock); with ``--time``, instead of the profile, the
median, p10 and p90 wall-clock and process CPU time per call (no profiler overhead); with
``PROFILE_CPU=REGEX``, cProfile's listing of CPU time (``time.process_time``) instead, restricted to
the functions matching REGEX. Use the database ``bench hotpath`` leaves behind (``<name>_hot_run``):
it has the agent and the policy.
The profiles that justified each change are in docs/performance.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

from bench.common import bench_agent_client, tool_call


def main(argv: list[str]) -> int:
    timing = "--time" in argv
    argv = [a for a in argv if a != "--time"]
    operation = argv[0] if argv else "append"
    n = int(argv[1]) if len(argv) > 1 else 300
    client, auth = bench_agent_client("profile")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    def post(path: str, body: Any, expect: int) -> Any:
        response = client.post(path, json.dumps(body), content_type="application/json", **auth)
        assert response.status_code == expect, response.content
        return response.json()

    def post_raw(path: str, body: Any) -> bytes:  # the answer's bytes, not parsed (as get)
        response = client.post(path, json.dumps(body), content_type="application/json", **auth)
        assert response.status_code == 200 and b'"isError":false' in response.content, response.content
        return response.content

    def get(path: str) -> bytes:
        response = client.get(path, **auth)
        assert response.status_code == 200, response.content
        return response.content

    did = post("/api/v1/decisions", {"intent": "bench.run.measure", "automation_mode": "autonomous"}, 201)[
        "decision_id"
    ]
    traced = did
    if operation in ("trace", "mcp-trace", "verify"):
        from bench.bench_hotpath import context_of

        for i in range(999):
            post(f"/api/v1/decisions/{did}/context", {"context": context_of(i)}, 201)

    calls = {
        "append": lambda: post(
            f"/api/v1/decisions/{did}/context", {"context": {"step": "measuring", "n": 1}}, 201
        ),
        "batch": lambda: post(
            f"/api/v1/decisions/{did}/context",
            {"contexts": [{"step": "measuring", "n": i} for i in range(100)]},
            201,
        ),
        "create": lambda: post(
            "/api/v1/decisions", {"intent": "bench.run.measure", "automation_mode": "autonomous"}, 201
        ),
        "evaluate": lambda: post(
            f"/api/v1/decisions/{did}/evaluate", {"policy_id": "bench_cap_v1", "inputs": {"amount": 5}}, 200
        ),
        "mcp": lambda: post(
            "/mcp", tool_call("decision_add_context", {"decision_id": did, "context": {"n": 1}}), 200
        ),
        "trace": lambda: get(f"/api/v1/decisions/{traced}/trace?limit=1000"),
        "get": lambda: get(f"/api/v1/decisions/{traced}"),
        "mcp-trace": lambda: post_raw(
            "/mcp", tool_call("decision_trace", {"decision_id": traced, "limit": 1000})
        ),
    }
    if operation == "verify":
        from tracemem_verify.chain import ChainVerifier

        events = client.get(f"/api/v1/decisions/{traced}/trace?limit=1000", **auth).json()["events"]

        def verify() -> None:
            assert ChainVerifier(traced).feed(events) is None

        call = verify
        n = max(1, n // 100)
    else:
        call = calls[operation]
        for _ in range(10):
            call()
        with CaptureQueriesContext(connection) as queries:
            call()
        print(f"-- {len(queries.captured_queries)} SQL statements in one {operation}:")
        for q in queries.captured_queries:
            print(f"   {q['time']}s  {q['sql'][:160]}")
    if timing:
        print_timing(operation, call, n)
        return 0
    if os.environ.get("PROFILE_CPU"):
        # CPU time only (cProfile timed by process_time): the time spent waiting for PostgreSQL and
        # Redis, which swings with the machine's load, is left out. PROFILE_CPU is a regular
        # expression restricting the listing ("." for everything).
        import cProfile
        import pstats
        import time

        cpu = cProfile.Profile(time.process_time)
        cpu.enable()
        for _ in range(n):
            call()
        cpu.disable()
        stats = pstats.Stats(cpu)
        stats.sort_stats("cumulative").print_stats(os.environ["PROFILE_CPU"], 60)
        return 0
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(n):
        call()
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False, short_mode=False))
    return 0


def print_timing(operation: str, call: Any, n: int) -> None:
    """Median, p10 and p90 of wall-clock and process CPU time per call, in ms."""
    walls: list[float] = []
    cpus: list[float] = []
    body = None
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        body = call()
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)

    def line(name: str, values: list[float]) -> str:
        q = statistics.quantiles(values, n=10)
        return f"{name} ms: p50 {statistics.median(values):.2f}  p10 {q[0]:.2f}  p90 {q[-1]:.2f}"

    size = f" | {len(body):,} bytes" if isinstance(body, bytes) else ""
    print(f"{operation} x{n}: {line('wall', walls)} | {line('cpu', cpus)}{size}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
