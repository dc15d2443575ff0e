"""Approval notification latency: from the approval's commit to the receiver's 2xx.

16 agents request approvals at once (each in its own thread through the REST door, in-process),
ROUNDS times; the real workers (``scripts/worker.sh``) deliver over a real broker to a local
webhook receiver, which notes when each request arrived. Latency is the receiver's arrival time
minus the approval's ``requested_at`` (taken inside the request's transaction, so a little before
its commit: the figure errs on the slow side). Goal (issue 12): p99 ≤ 1 s, also while another
route's receiver hangs. Needs PostgreSQL (``DATABASE_URL``) and Redis (``REDIS_URL``).
"""

from __future__ import annotations

import base64
import http.server
import os
import secrets
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import django_setup

ROOT = Path(__file__).resolve().parent.parent
AGENTS = 16
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 10))
GOAL_MS = 1000


class _Receiver:
    """Answers ``/ok`` with 200 at once and holds ``/hang`` open; notes when each webhook-id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                now = time.time()
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.endswith("/hang"):
                    receiver.release.wait(60)
                    return
                receiver.arrived.setdefault(self.headers.get("webhook-id", ""), now)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run() -> list[dict[str, Any]]:
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return [{"scenario": "skipped", "note": "set DATABASE_URL (PostgreSQL) and REDIS_URL"}]
    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from agents.services import registry as agent_registry
    from approvals.models import Approval, ApprovalRoute, Delivery, WebhookEndpoint
    from tracemem_core.actor import Actor
    from tracemem_site.celery import app as celery_app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    receiver = _Receiver()
    tag = secrets.token_hex(3)

    def route(mode: str) -> str:
        name = f"bench_{mode}_{tag}"
        WebhookEndpoint.objects.create(
            name=name,
            url=receiver.url(mode),
            signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        )
        ApprovalRoute.objects.create(
            route_id=f"route_{name}", name=name, channels=[{"type": "webhook", "endpoint": name}]
        )
        return f"route_{name}"

    healthy, hanging = route("ok"), route("hang")
    keys = [
        agent_registry.agent_key_issue(
            actor=Actor.system(),
            agent=agent_registry.agent_get_or_create(actor=Actor.system(), name=f"bench-{tag}-{i}")[0],
        ).secret
        for i in range(AGENTS)
    ]
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": f"postgres://{db['USER']}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}"
        f"@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
    }
    log = open(ROOT / "var" / "bench-worker.log", "w")  # noqa: SIM115  # closed below
    worker = subprocess.Popen(
        ["bash", "scripts/worker.sh"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(8)  # both workers up (a cold start on a busy machine)
        _round(keys, healthy, hanging, 0, Client)  # warm-up: connections, the destination's first answer
        time.sleep(2)
        for scenario, stall in (("16 agents at once", 0), ("16 agents, 5 hanging ahead", 5)):
            samples: list[float] = []
            for _ in range(ROUNDS):
                approval_ids = _round(keys, healthy, hanging, stall, Client)
                connection.close()
                deadline = time.time() + 20
                ids = dict(
                    Delivery.objects.filter(approval_id__in=approval_ids).values_list(
                        "delivery_id", "approval_id"
                    )
                )
                while time.time() < deadline and not all(w in receiver.arrived for w in ids):
                    time.sleep(0.05)
                requested = dict(
                    Approval.objects.filter(pk__in=approval_ids).values_list("approval_id", "requested_at")
                )
                for webhook_id, approval_id in ids.items():
                    arrived = receiver.arrived.get(webhook_id)
                    samples.append(
                        (arrived - requested[approval_id].timestamp()) * 1000 if arrived else float("inf")
                    )
            p99 = _percentile(samples, 0.99)
            rows.append(
                {
                    "scenario": scenario,
                    "deliveries": len(samples),
                    "p50_ms": round(statistics.median(samples), 1),
                    "p99_ms": round(p99, 1),
                    "max_ms": round(max(samples), 1),
                    "goal": f"p99 <= {GOAL_MS} ms",
                    "met": "yes" if p99 <= GOAL_MS else "NO",
                }
            )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        log.close()
        receiver.close()
    return rows


def _round(keys: list[str], healthy: str, hanging: str, stall: int, client_class: Any) -> list[str]:
    """One round: ``stall`` requests to the hanging route first, then every agent at once."""
    from django.db import connection

    def ask(key: str, route_id: str, out: list[str]) -> None:
        client = client_class()
        auth = {"HTTP_AUTHORIZATION": f"Agent {key}"}
        created = client.post(
            "/api/v1/decisions",
            {"intent": "bench.approval.deliver", "automation_mode": "propose"},
            content_type="application/json",
            **auth,
        ).json()
        response = client.post(
            f"/api/v1/decisions/{created['decision_id']}/approvals",
            {"approval_route_id": route_id},
            content_type="application/json",
            **auth,
        )
        out.append(response.json()["approval_id"])
        connection.close()

    ignored: list[str] = []
    for i in range(stall):
        ask(keys[i], hanging, ignored)
    measured: list[str] = []
    start = threading.Barrier(len(keys))

    def agent(key: str) -> None:
        start.wait()
        ask(key, healthy, measured)

    threads = [threading.Thread(target=agent, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return measured
