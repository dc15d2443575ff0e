"""The outbox with a REAL Celery worker subprocess on real Redis and the pytest PostgreSQL database."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from werkzeug import Request, Response

from approvals.models import Delivery, WebhookEndpoint
from approvals.tasks import approvals_tick
from decisions.models import TraceEvent
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import use_broker
from tracemem_site.celery import app as celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery_worker]
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, redis_url: str, log: Path) -> None:
        db = django_settings.DATABASES["default"]
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "DB_CONN_MAX_AGE": "0",
            "TRACEMEM_DELIVERY_MAX_ATTEMPTS": "3",
            "TRACEMEM_DELIVERY_BACKOFF_MS": "400",
            "TRACEMEM_DELIVERY_LEASE_MS": "1500",
            "TRACEMEM_DELIVERY_HTTP_TIMEOUT": "10",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.write_text("")
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/celery"),
                "-A",
                "tracemem_site",
                "worker",
                "--pool=solo",
                "-Q",
                "celery,deliveries",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
                f"--logfile={self.log}",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: "ready." in self.log.read_text(), 40, "the Celery worker to start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker(redis_url: str, tmp_path: Path) -> Iterator[Worker]:
    use_broker(redis_url)
    celery_app.control.purge()  # nothing left over from earlier runs
    w = Worker(redis_url, tmp_path / "worker.log")
    w.start()
    yield w
    w.stop()
    use_broker(redis_url)


@pytest.fixture
def agent_api(make_agent: Any) -> AgentClient:
    return AgentClient(make_agent("worker-agent")[1])


def webhook_route(url: str) -> str:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    WebhookEndpoint.objects.create(name="ops", url=url, signing_secret=secret)
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": "ops"}])
    return secret


def delivery_of(approval_id: str) -> Delivery:
    return Delivery.objects.get(approval_id=approval_id)


def test_broker_outage_records_the_request_and_the_beat_delivers_it_once_the_broker_is_back(
    worker: Worker, agent_api: AgentClient, httpserver: Any, redis_url: str
) -> None:
    webhook_route(httpserver.url_for("/hook"))
    httpserver.expect_request("/hook").respond_with_data("ok")
    decision_id = open_decision(agent_api)
    use_broker("redis://127.0.0.1:1/0")  # nothing listens there
    started = time.monotonic()
    response = request_approval(agent_api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 201 and time.monotonic() - started < 5
    approval_id = response.json()["approval_id"]
    assert agent_api.get(f"/api/v1/decisions/{decision_id}").json()["status"] == "needs_approval"
    time.sleep(1)
    pending = delivery_of(approval_id)
    assert (pending.status, pending.attempts) == ("pending", 0) and httpserver.log == []

    use_broker(redis_url)
    assert approvals_tick.apply().get()["redispatched"] == 1
    wait_for(lambda: delivery_of(approval_id).status == "delivered", 20, "the worker to deliver")
    assert [r.headers["webhook-id"] for r, _ in httpserver.log] == [pending.delivery_id]
    assert agent_api.get(f"/api/v1/decisions/{decision_id}").json()["delivery"]["status"] == "delivered"


def test_worker_retries_a_failing_receiver_with_growing_backoff_then_marks_failed(
    worker: Worker, agent_api: AgentClient, httpserver: Any
) -> None:
    webhook_route(httpserver.url_for("/hook"))
    seen: list[float] = []

    def handler(request: Request) -> Response:
        seen.append(time.monotonic())
        return Response("down", status=500)

    httpserver.expect_request("/hook").respond_with_handler(handler)
    decision_id = open_decision(agent_api)
    approval_id = request_approval(agent_api, decision_id, approval_route_id="route_finance").json()[
        "approval_id"
    ]
    wait_for(lambda: delivery_of(approval_id).status == "failed", 30, "the delivery to be marked failed")
    delivery = delivery_of(approval_id)
    assert (delivery.attempts, delivery.last_error) == (3, "webhook receiver answered HTTP 500")
    assert len(seen) == 3
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    assert gaps[0] >= 0.35 and gaps[1] >= 0.75, gaps  # 400 ms, then 800 ms
    got = agent_api.get(f"/api/v1/decisions/{decision_id}").json()
    assert got["delivery"]["status"] == "failed" and got["status"] == "needs_approval"


def test_worker_killed_mid_delivery_is_delivered_once_per_channel(
    worker: Worker, agent_api: AgentClient, httpserver: Any
) -> None:
    webhook_route(httpserver.url_for("/hook"))
    inside = threading.Event()
    release = threading.Event()
    ids: list[str] = []

    def handler(request: Request) -> Response:
        ids.append(request.headers["webhook-id"])
        if len(ids) == 1:
            inside.set()
            release.wait(10)  # hold the first attempt open until its worker is dead
        return Response("ok", status=200)

    httpserver.expect_request("/hook").respond_with_handler(handler)
    decision_id = open_decision(agent_api)
    approval_id = request_approval(agent_api, decision_id, approval_route_id="route_finance").json()[
        "approval_id"
    ]
    assert inside.wait(20), "the worker never called the receiver"
    worker.kill()
    release.set()
    stuck = delivery_of(approval_id)
    assert (stuck.status, stuck.attempts) == ("pending", 1)
    # Before the lease runs out the re-dispatcher leaves an in-flight delivery alone.
    assert approvals_tick.apply().get()["redispatched"] == 0

    worker.start()
    time.sleep(1.6)  # the claim's lease (TRACEMEM_DELIVERY_LEASE_MS) expires
    assert approvals_tick.apply().get()["redispatched"] == 1
    wait_for(lambda: delivery_of(approval_id).status == "delivered", 20, "the restarted worker to deliver")
    time.sleep(0.5)
    assert approvals_tick.apply().get()["redispatched"] == 0
    done = delivery_of(approval_id)
    assert done.attempts == 2
    # The receiver may see the interrupted attempt and the retry, but both carry the same id.
    assert set(ids) == {done.delivery_id}
    assert Delivery.objects.filter(approval_id=approval_id, channel="webhook").count() == 1
    delivered_events = TraceEvent.objects.filter(decision_id=decision_id, type="delivery")
    assert [e.payload["status"] for e in delivered_events] == ["delivered"]
