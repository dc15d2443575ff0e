"""The Redis work of one authenticated agent request, in-process (docs/performance.md section 20).

``python -m bench.auth_round_trip [BATCHES] [N]`` (with ``REDIS_URL``) times, alternately in
batches of N, the two ways a request reaches Redis: a key checked in the database reads the
credentials generation and then counts the request (``keycache.generation()`` +
``rate_limit.count()``: two round trips), a remembered key does both in one script
(``keycache.confirm()``). It prints the median CPU time and wall time of each per request.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable


def main(argv: list[str]) -> int:
    batches = int(argv[0]) if argv else 20
    n = int(argv[1]) if len(argv) > 1 else 2000
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
    os.environ["TRACEMEM_AGENT_RATE_LIMIT"] = "1000000000/minute"
    import django

    django.setup()
    from agents import keycache
    from tracemem_core import rate_limit

    current = keycache.generation()
    window = rate_limit.agent_window("agent_bench_round_trip")
    if current is None or window is None:
        raise SystemExit("needs a reachable Redis (REDIS_URL)")
    # confirm() reads only the entry's generation.
    entry = keycache.Entry(key=None, agent=None, generation=current, stored=time.monotonic())  # type: ignore[arg-type]

    def two_trips() -> None:
        assert keycache.generation() == current
        rate_limit.count(window)

    def one_trip() -> None:
        assert keycache.confirm(entry, window)[1] is not None

    def batch(call: Callable[[], None]) -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            call()
        return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6

    ways = {"generation + count (two round trips)": two_trips, "confirm (one script)": one_trip}
    for call in ways.values():
        batch(call)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for i in range(batches):
        for name in list(ways) if i % 2 == 0 else list(reversed(ways)):
            results[name].append(batch(ways[name]))
    for name, got in results.items():
        cpu = statistics.median(g[0] for g in got)
        wall = statistics.median(g[1] for g in got)
        print(
            f"{name}: {cpu:.1f} us CPU, {wall:.1f} us wall per request (median of {batches} batches of {n})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
