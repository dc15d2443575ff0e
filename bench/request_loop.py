"""One client sending one operation in a loop to a running server, for profiling the server itself.

``python -m bench.request_loop URL KEY OPERATION [N]`` (OPERATION: create, append, batch, get, evaluate,
mcp, trace, mcp-trace) prints
the p50/p90/p99 latency over N requests on one keep-alive connection and, with ``PIDS`` set to the
worker processes' ids, their CPU time per request (from /proc). Meanwhile, sample a worker with
``py-spy record --gil -p PID -f raw -o out.raw`` (py-spy is a dev dependency). docs/performance.md,
sections 11-17, were measured this way. ``trace`` reads ``GET .../trace?limit=1000`` of a
1,000-event decision (bench_hotpath's trace read; made first, 100 events a request), ``mcp-trace`` the
same page through MCP's ``decision_trace``.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from bench.bench_hotpath import BATCH, TRACE_EVENTS, context_of
from bench.common import cpu_seconds, tool_call

START_SERVER_FIRST = (
    "start scripts/serve.sh with DATABASE_URL at the NAME_hot_run a `python -m bench hotpath` run "
    "left and KEY the last line of `manage.py create_agent bench-agent` there (docs/performance.md, How to reproduce)"
)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(f"usage: python -m bench.request_loop URL KEY OPERATION [N]; {START_SERVER_FIRST}")
    url, key, operation = argv[0], argv[1], argv[2]
    n = int(argv[3]) if len(argv) > 3 else 300
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    headers = {
        "Authorization": f"Agent {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }

    def call(method: str, path: str, body: Any = None, parse: bool = True) -> Any:
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        except ConnectionRefusedError:
            raise SystemExit(f"bench.request_loop: no server at {url}: {START_SERVER_FIRST}") from None
        response = conn.getresponse()
        data = response.read()
        if response.status == 401:
            raise SystemExit(f"bench.request_loop: {url} refused the key (401): {START_SERVER_FIRST}")
        if response.status >= 300:
            raise SystemExit(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if data and parse else None

    create = {"intent": "bench.run.measure", "automation_mode": "autonomous"}
    decision_id = call("POST", "/api/v1/decisions", create)["decision_id"]
    context = {"step": "measuring", "n": 1}
    batch = {"contexts": [{"step": "measuring", "n": i} for i in range(BATCH)]}
    if operation in ("trace", "mcp-trace"):
        for start in range(0, TRACE_EVENTS - 1, 100):
            contexts = [context_of(i) for i in range(start, min(start + 100, TRACE_EVENTS - 1))]
            call("POST", f"/api/v1/decisions/{decision_id}/context", {"contexts": contexts})
    operations = {
        "create": lambda: call("POST", "/api/v1/decisions", create),
        "append": lambda: call("POST", f"/api/v1/decisions/{decision_id}/context", {"context": context}),
        # BATCH events a request (bench_hotpath's batch append): compare its events/s with append's.
        "batch": lambda: call("POST", f"/api/v1/decisions/{decision_id}/context", batch),
        "get": lambda: call("GET", f"/api/v1/decisions/{decision_id}"),
        # POLICY: a published policy granted to this agent, taking inputs.amount (bench_hotpath's).
        "evaluate": lambda: call(
            "POST",
            f"/api/v1/decisions/{decision_id}/evaluate",
            {"policy_id": os.environ.get("POLICY", "bench_cap_v1"), "inputs": {"amount": 5}},
        ),
        "mcp": lambda: call(
            "POST",
            "/mcp",
            tool_call("decision_add_context", {"decision_id": decision_id, "context": context}),
        ),
        # The page as bench_hotpath reads it: to the last byte, not parsed.
        "trace": lambda: call(
            "GET", f"/api/v1/decisions/{decision_id}/trace?limit={TRACE_EVENTS}", parse=False
        ),
        "mcp-trace": lambda: call(
            "POST",
            "/mcp",
            tool_call("decision_trace", {"decision_id": decision_id, "limit": TRACE_EVENTS}),
            parse=False,
        ),
    }
    one = operations[operation]
    for _ in range(20):
        one()
    pids = os.environ.get("PIDS", "").split()
    cpu_before = cpu_seconds(pids) if pids else 0.0
    times = []
    for _ in range(n):
        started = time.perf_counter()
        one()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    line = f"{operation}: p50 {statistics.median(times):.2f} ms  p90 {times[int(n * 0.9)]:.2f}  p99 {times[int(n * 0.99)]:.2f}"
    if operation in ("append", "batch"):
        events = BATCH if operation == "batch" else 1
        line += f"  {events * n / (sum(times) / 1000):,.0f} events/s"
    if pids:
        line += f"  server CPU per request {(cpu_seconds(pids) - cpu_before) / n * 1000:.2f} ms"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
