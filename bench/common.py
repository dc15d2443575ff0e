"""Shared benchmark plumbing: Django on its own database, timing, percentiles."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

_ready = False


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def cpu_seconds(pids: list[int] | list[str]) -> float:
    """CPU time (user + system) the processes ``pids`` have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def django_setup() -> None:
    """Set Django up once, on ``<DATABASE NAME>_bench`` (created or reused, never the dev data)."""
    global _ready
    if _ready:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
    # Benchmarks measure the doors, not the per-agent rate limit they would soon hit.
    os.environ["TRACEMEM_AGENT_RATE_LIMIT"] = "off"
    # Their receivers listen on loopback, which a server with DATABASE_URL refuses unless allowed
    # (docs/security.md §9); the delivery worker they start inherits this.
    os.environ.setdefault("TRACEMEM_OUTBOUND_ALLOW", "127.0.0.0/8,::1")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench"
    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=True)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    _ready = True


def iterations(default: int = 200) -> int:
    return int(os.environ.get("BENCH_N", default))


def measure(fn: Callable[[], Any], n: int, warmup: int = 10) -> dict[str, float]:
    """Call ``fn`` ``n`` times; p50/p95 wall time in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 3),
    }


RUN_HOTPATH_FIRST = (
    "run `DATABASE_URL=postgres://USER@HOST:5432/NAME python -m bench hotpath` first, then point "
    "DATABASE_URL at the NAME_hot_run it leaves behind (docs/performance.md, How to reproduce)"
)


def bench_agent() -> Any:
    """``bench-agent`` of the database in ``DATABASE_URL`` (Django set up), or exit with one line
    saying what to run first: the in-process tools need the database ``bench hotpath`` leaves."""
    from django.conf import settings
    from django.db import DatabaseError

    from agents.models import Agent

    name = settings.DATABASES["default"]["NAME"]
    try:
        return Agent.objects.get(name="bench-agent")
    except Agent.DoesNotExist:
        raise SystemExit(f"bench: database {name!r} has no bench-agent: {RUN_HOTPATH_FIRST}") from None
    except DatabaseError as exc:  # no such database, no server, not migrated
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SystemExit(f"bench: cannot use database {name!r} ({reason}): {RUN_HOTPATH_FIRST}") from None


def bench_agent_client(key_name: str) -> tuple[Any, dict[str, str]]:
    """Django set up on the database in ``DATABASE_URL`` as it is (the one ``bench hotpath`` leaves
    behind, with its ``bench-agent``), a new key of that agent, and a test client with its headers:
    the in-process profilers' starting point."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
    os.environ["TRACEMEM_AGENT_RATE_LIMIT"] = "1000000000/minute"  # counted as in production, never hit
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from agents.services import registry as agent_services
    from tracemem_core.actor import Actor

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    agent = bench_agent()
    key = agent_services.agent_key_issue(actor=Actor.system(), agent=agent, name=key_name).secret
    return Client(), {
        "HTTP_AUTHORIZATION": f"Agent {key}",
        "HTTP_ACCEPT": "application/json, text/event-stream",
    }


def tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An MCP ``tools/call`` JSON-RPC message."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def alternate(operation: str, before: Callable[[], Any], after: Callable[[], Any], count: int) -> None:
    """Call ``before`` (A) and ``after`` (B) ``count`` times each, taking turns (which goes first
    swaps every call), and print each one's median wall-clock and CPU milliseconds."""
    walls: dict[str, list[float]] = {"A": [], "B": []}
    cpus: dict[str, list[float]] = {"A": [], "B": []}
    for i in range(count):
        order = (("A", before), ("B", after)) if i % 2 else (("B", after), ("A", before))
        for name, call in order:
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            cpus[name].append((time.process_time() - cpu) * 1000)
            walls[name].append((time.perf_counter() - wall) * 1000)
    for name in ("A", "B"):
        print(
            f"{operation} {name} x{count}: wall p50 {statistics.median(walls[name]):.3f} ms, "
            f"cpu p50 {statistics.median(cpus[name]):.3f} ms"
        )
