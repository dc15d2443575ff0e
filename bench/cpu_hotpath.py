"""CPU per call of the hot path over REST and MCP, in-process (Django test client, PostgreSQL, Redis).

``DATABASE_URL=postgres://.../<db> python -m bench.cpu_hotpath [N=20] [ROUNDS=30]`` on the database a
``bench hotpath`` run leaves behind (``<name>_hot_run``: it has the agent and the policy). Each round
runs N calls of each operation — ``decision_add_context`` and ``decision_evaluate``, each over REST
and over MCP (``tools/call`` on ``/mcp``) — in turn, and measures this process's CPU time
(``time.process_time``) per call: what the server spends, without the time it waits for PostgreSQL
or Redis, which on a shared machine swings far more than the CPU a call costs. It prints the median
of the rounds per operation and the MCP/REST ratios (the median of each round's ratio: short rounds
side by side see the same load). Compare two checkouts by running it in each,
alternately (docs/performance.md).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import bench_agent_client, tool_call


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20
    rounds = int(argv[1]) if len(argv) > 1 else 30
    client, auth = bench_agent_client("cpu")

    def post(path: str, body: Any, expect: int) -> Any:
        response = client.post(path, json.dumps(body), content_type="application/json", **auth)
        assert response.status_code == expect, response.content
        return response.json()

    def tool(name: str, arguments: dict[str, Any]) -> Callable[[], Any]:
        message = tool_call(name, arguments)

        def call() -> None:
            result = post("/mcp", message, 200)["result"]
            assert not result.get("isError"), result

        return call

    create = {"intent": "bench.run.measure", "automation_mode": "autonomous"}
    did = post("/api/v1/decisions", create, 201)["decision_id"]
    evaluate = {"policy_id": "bench_cap_v1", "inputs": {"amount": 5}}
    calls: dict[str, Callable[[], Any]] = {
        "append REST": lambda: post(f"/api/v1/decisions/{did}/context", {"context": {"n": 1}}, 201),
        "append MCP": tool("decision_add_context", {"decision_id": did, "context": {"n": 1}}),
        "evaluate REST": lambda: post(f"/api/v1/decisions/{did}/evaluate", evaluate, 200),
        "evaluate MCP": tool("decision_evaluate", {"decision_id": did, **evaluate}),
    }
    for call in calls.values():
        for _ in range(10):
            call()
    per_call: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            call = calls[name]
            start = time.process_time()
            for _ in range(n):
                call()
            per_call[name].append((time.process_time() - start) / n * 1e6)
    median = {name: statistics.median(values) for name, values in per_call.items()}
    for name in names:
        quartiles = statistics.quantiles(per_call[name], n=4)
        print(f"{name:14} {median[name]:8.0f} µs CPU/call  (quartiles {quartiles[0]:.0f}–{quartiles[2]:.0f})")
    for op in ("append", "evaluate"):
        # Each round's MCP figure against the REST figure measured next to it, then the median.
        ratios = [m / r for m, r in zip(per_call[f"{op} MCP"], per_call[f"{op} REST"], strict=True)]
        print(f"{op} MCP/REST     {statistics.median(ratios):.3f} (median of the rounds' ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
