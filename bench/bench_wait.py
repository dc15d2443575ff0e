"""200 agents in ``decision_wait`` at once, and everyone else's latency (issue 16).

The production server (``scripts/serve.sh``, its defaults: 2 workers × 8 threads behind the asyncio
front) runs on the bench database. Other requests — ``decision_get`` (a read) and
``decision_add_context`` (an append) from one client, one after another — are timed idle, then
while WAITERS agents each hold a ``GET /api/v1/decisions/{id}/wait`` open on a pending approval
(re-issued whenever one times out). Goal: p50 with the waiters within 10 % of idle. Then
WAKE_SAMPLES of the waiting approvals are granted one by one and the time from each vote's commit
to its waiter's answer is reported (the wake-up latency).

Idle and loaded blocks alternate (``BENCH_ROUNDS``, default 4) and each loaded block starts once the
server has parked every wait (its CPU use has settled: parking 200 waits is 200 requests' work),
so the figures compare a steady state with waiters against one without. Needs PostgreSQL
(``DATABASE_URL``) and Linux (/proc). Load generator, server and database share the machine; run
it on a quiet one (``BENCH_N`` samples per figure in total, default 400).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import django_setup, iterations

ROOT = Path(__file__).resolve().parent.parent
WAITERS = int(os.environ.get("BENCH_WAITERS", 200))
WAKE_SAMPLES = 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2),
    }


def _server_ticks(group: int) -> int:
    """CPU time (clock ticks) used so far by the server's processes (Linux /proc)."""
    total = 0
    found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _settle(group: int, timeout: float = 60) -> None:
    """Until the server is quiet: it has handled (and parked) every wait sent so far."""
    deadline = time.monotonic() + timeout
    last = _server_ticks(group)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _server_ticks(group)
        if now - last <= 2:  # ≤ 20 ms of CPU in half a second
            return
        last = now


def _time_others(url: str, key: str, decision_id: str, n: int, timings: dict[str, list[float]]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Agent {key}"}, timeout=60) as http:
        for i in range(n + 10):
            for op, call in (
                ("decision_get", lambda: http.get(f"/api/v1/decisions/{decision_id}")),
                (
                    "decision_add_context",
                    lambda i=i: http.post(
                        f"/api/v1/decisions/{decision_id}/context", json={"context": {"i": i}}
                    ),
                ),
            ):
                started = time.perf_counter()
                answer = call()
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code < 300, answer.text
                if i >= 10:  # warm-up
                    timings.setdefault(op, []).append(elapsed)


class _Waiters:
    """WAITERS agents in one event loop, each in decision_wait on its own decision until stopped."""

    def __init__(self, url: str, key: str, decisions: list[str]) -> None:
        self.url, self.key, self.decisions = url, key, decisions
        self.returned: dict[str, float] = {}
        self.in_flight = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _one(self, http: httpx.AsyncClient, decision_id: str) -> None:
        while not self._stop.is_set():
            self.in_flight += 1
            try:
                answer = await http.get(
                    f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 50}
                )
            finally:
                self.in_flight -= 1
            if answer.status_code != 200:
                self.errors.append(answer.text)
                return
            if not answer.json()["timed_out"]:
                self.returned[decision_id] = time.monotonic()
                return

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=WAITERS + 10, max_keepalive_connections=WAITERS + 10)
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Agent {self.key}"}, timeout=70, limits=limits
        ) as http:
            tasks = [asyncio.create_task(self._one(http, d)) for d in self.decisions]
            while not self._stop.is_set() and not all(t.done() for t in tasks):
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.in_flight < len(self.decisions) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the last requests reach the server

    def stop(self) -> None:
        """Hang up: each client disconnects, which ends its wait on the server."""
        self._stop.set()
        self.thread.join(30)


def run() -> list[dict[str, Any]]:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return [{"phase": "skipped", "note": "set DATABASE_URL (PostgreSQL)"}]
    django_setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from agents.services import registry as agent_services
    from approvals.services import requests as approval_services
    from decisions import services as decision_services
    from decisions.models import Decision
    from tracemem_core.actor import Actor
    from tracemem_site import demo

    demo.seed()  # routes (the default route takes the approvals), the admin who votes
    agent = agent_services.agent_create(actor=Actor.system(), name=f"bench-wait-{int(time.time())}")
    key = agent_services.agent_key_issue(actor=Actor.system(), agent=agent).secret
    actor = Actor.for_agent(agent)
    probe = decision_services.decision_create(
        actor=actor, intent="bench.wait.probe", automation_mode="autonomous"
    )
    decisions = []
    for _ in range(WAITERS):
        decision = decision_services.decision_create(
            actor=actor, intent="bench.wait.agent", automation_mode="propose"
        )
        approval_services.decision_request_approval(
            actor=actor, decision_id=decision.decision_id, title="bench"
        )
        decisions.append(decision.decision_id)

    db = settings.DATABASES["default"]
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": f"postgres://{db['USER']}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}"
        f"@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TRACEMEM_PORT": str(port),
        "TRACEMEM_AGENT_RATE_LIMIT": "off",
        # One agent's key stands for WAITERS agents: lift its cap on waits at once.
        "TRACEMEM_WAIT_MAX_PER_AGENT": str(WAITERS),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    log = open(ROOT / "var" / "bench_wait_server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        ["bash", "scripts/serve.sh", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve.sh did not start; see var/bench_wait_server.log")
            time.sleep(0.3)
        # Idle and loaded blocks alternate, so that the machine's own load (shared by others)
        # drifts into both alike; the waiters hang up after each loaded block and come back.
        n = max(10, iterations(400) // ROUNDS)
        idle_samples: dict[str, list[float]] = {}
        loaded_samples: dict[str, list[float]] = {}
        parked = 0
        for _ in range(ROUNDS):
            _time_others(url, key, probe.decision_id, n, idle_samples)
            waiters = _Waiters(url, key, decisions)
            waiters.start()
            _settle(server.pid)
            parked = waiters.in_flight
            _time_others(url, key, probe.decision_id, n, loaded_samples)
            assert not waiters.returned and not waiters.errors, waiters.errors[:3]
            waiters.stop()
            _settle(server.pid)  # the server notices the hang-ups
        idle = {op: _percentiles(samples) for op, samples in idle_samples.items()}
        loaded = {op: _percentiles(samples) for op, samples in loaded_samples.items()}
        waiters = _Waiters(url, key, decisions)
        waiters.start()
        _settle(server.pid)

        admin = get_user_model().objects.get(username=demo.DEMO_ADMIN)
        wake_ms = []
        for decision_id in decisions[:WAKE_SAMPLES]:
            approval_id = Decision.objects.get(pk=decision_id).pending_approval_id
            approval_services.approval_vote(
                actor=Actor.for_user(admin), approval_id=approval_id, decision="approve", channel="web"
            )
            committed = time.monotonic()
            until = committed + 10
            while decision_id not in waiters.returned and time.monotonic() < until:
                time.sleep(0.002)
            wake_ms.append((waiters.returned.get(decision_id, until) - committed) * 1000)
        waiters.stop()

        for op in ("decision_get", "decision_add_context"):
            ratio = loaded[op]["p50_ms"] / idle[op]["p50_ms"]
            rows.append(
                {
                    "operation": op,
                    "idle_p50_ms": idle[op]["p50_ms"],
                    "idle_p95_ms": idle[op]["p95_ms"],
                    f"{WAITERS}_waits_p50_ms": loaded[op]["p50_ms"],
                    f"{WAITERS}_waits_p95_ms": loaded[op]["p95_ms"],
                    "p50_ratio": round(ratio, 3),
                    "goal": "≤ 1.10",
                    "met": "yes" if ratio <= 1.10 else "NO",
                }
            )
        rows.append(
            {
                "operation": f"wake-up after the vote's commit ({WAKE_SAMPLES} of {parked} parked waits)",
                "idle_p50_ms": "",
                "idle_p95_ms": "",
                f"{WAITERS}_waits_p50_ms": _percentiles(wake_ms)["p50_ms"],
                f"{WAITERS}_waits_p95_ms": _percentiles(wake_ms)["p95_ms"],
                "p50_ratio": "",
                "goal": "≤ 1000 ms",
                "met": "yes" if max(wake_ms) <= 1000 else "NO",
            }
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        for decision_id in decisions:  # leave nothing pending in the bench database
            decision = Decision.objects.get(pk=decision_id)
            if not decision.is_terminal:
                decision_services.decision_close(actor=actor, decision_id=decision_id, action="abort")
    return rows
