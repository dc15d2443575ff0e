"""Drills: the approval path under faults, run as an operator would run TraceMem.

The worker and the beat are the real entry points (``scripts/worker.sh``, ``scripts/beat.sh``) on a
redis-server of the drill's own (so it can be stopped) and the test database; receivers are real
local HTTP servers that answer, fail, hang or hang up. Each drill asserts that nothing acknowledged
is lost, that nothing is delivered twice (a ``webhook-id`` is answered 2xx at most once), and the
timings the issue asks for. Run them alone with ``scripts/test.sh -m drill``.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import close_old_connections, connection

from agents.models import Agent
from approvals.models import Approval, Delivery, DeliveryStatus, WebhookEndpoint
from approvals.tasks import publish_delivery
from decisions.models import Decision
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.fault_helpers import (
    HeldLock,
    Process,
    Receiver,
    RedisServer,
    process_env,
    terminate_backends,
    use_broker,
    use_cache,
    wait_for,
    within,
)
from tracemem_core import shared_cache
from tracemem_site.celery import app as celery_app

pytestmark = [pytest.mark.drill, pytest.mark.django_db(transaction=True)]

DRILL_ENV = {
    "TRACEMEM_DELIVERY_MAX_ATTEMPTS": "3",
    "TRACEMEM_DELIVERY_BACKOFF_MS": "300",
    "TRACEMEM_DELIVERY_LEASE_MS": "6000",  # longer than one attempt can take (connect 3 s, total 5 s)
    "TRACEMEM_DELIVERY_CONNECT_TIMEOUT": "3",
    "TRACEMEM_DELIVERY_HTTP_TIMEOUT": "5",
    "TRACEMEM_APPROVALS_TICK_SECONDS": "1",
}


@pytest.fixture(scope="module")
def redis(django_db_setup: Any) -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    log = tmp_path_factory.mktemp("drills") / "worker.log"
    process = Process("worker.sh", log, process_env(redis.url, **DRILL_ENV))
    process.start(ready=" ready.", count=2)  # both workers: deliveries and tasks
    yield process
    process.stop()


@pytest.fixture
def beat(redis: RedisServer, tmp_path: Path) -> Iterator[Process]:
    env = process_env(redis.url, TRACEMEM_VAR_DIR=str(tmp_path), **DRILL_ENV)
    process = Process("beat.sh", tmp_path / "beat.log", env)
    process.start(ready="beat: Starting")
    yield process
    process.stop()


@pytest.fixture
def stack(redis: RedisServer, worker: Process, settings: Any) -> Iterator[RedisServer]:
    """This process (the web door under test) publishes to and caches in the drill's Redis."""
    if not redis.proc:
        redis.start()
    use_broker(redis.url)
    use_cache(settings, redis.url)
    settings.TRACEMEM_AGENT_RATE_LIMIT = "1200/minute"  # the shipped default
    celery_app.control.purge()
    yield redis
    # The module's worker outlives the test: nothing of this test may still be sending when the
    # database is flushed (TRUNCATE against a send's row lock deadlocks). Cancel what is queued (the
    # worker skips cancelled rows; the UPDATE waits for the sends under way) and drop the queue.
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.CANCELLED)
    celery_app.control.purge()
    time.sleep(0.5)  # a task already taken sees a cancelled row and ends
    shared_cache.reset()
    use_broker(settings.CELERY_BROKER_URL)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _route(receiver: Receiver, mode: str) -> str:
    """A route whose one channel is a webhook to ``receiver`` in ``mode``; unique names per call."""
    name = f"{mode}_{secrets.token_hex(4)}"
    WebhookEndpoint.objects.create(
        name=name,
        url=receiver.url(mode),
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    make_route(f"route_{name}", channels=[{"type": "webhook", "endpoint": name}])
    return f"route_{name}"


def _ask(api: AgentClient, route_id: str) -> tuple[str, str, float]:
    """(decision_id, webhook-id, monotonic time the 201 arrived) for one approval request."""
    decision_id = open_decision(api)
    answer = request_approval(api, decision_id, approval_route_id=route_id)
    acknowledged = time.monotonic()
    assert answer.status_code == 201, answer.content
    delivery = Delivery.objects.get(approval_id=answer.json()["approval_id"])
    return decision_id, delivery.delivery_id, acknowledged


def _no_duplicates(receiver: Receiver) -> None:
    successes = receiver.successes()
    assert len(successes) == len(set(successes)), "a webhook-id was delivered (2xx) more than once"


@pytest.fixture
def api(make_agent: Any) -> AgentClient:
    return AgentClient(make_agent("drill-agent")[1])


@pytest.mark.parametrize("fault", ["stopped", "hung"])
def test_redis_down_the_request_is_recorded_and_the_webhook_arrives_after_redis_returns(
    fault: str, stack: RedisServer, beat: Process, receiver: Receiver, api: AgentClient
) -> None:
    route_id = _route(receiver, "ok")
    stack.stop() if fault == "stopped" else stack.pause()  # refused, or accepted and never answered
    decision_id = open_decision(api)
    answer, took = within(20, lambda: request_approval(api, decision_id, approval_route_id=route_id))
    assert answer.status_code == 201, answer.content
    assert took <= 3, took  # bounded Redis timeouts, whatever the fault
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert (got["status"], got["delivery"]["status"]) == ("needs_approval", "pending")
    webhook_id = Delivery.objects.get(approval_id=answer.json()["approval_id"]).delivery_id
    time.sleep(1.5)
    assert receiver.hits == []  # nobody could carry it while Redis was down

    stack.start() if fault == "stopped" else stack.resume()  # the worker and the beat carry on by themselves
    wait_for(lambda: receiver.arrival(webhook_id) is not None, 30, "the webhook after Redis returned")
    wait_for(
        lambda: Delivery.objects.get(pk=webhook_id).status == "delivered", 10, "the outcome to be recorded"
    )
    time.sleep(1.5)  # a few more ticks: nothing is sent again
    assert receiver.successes() == [webhook_id]


def test_a_healthy_webhook_arrives_within_1s_while_the_agent_row_is_held_and_another_receiver_hangs(
    stack: RedisServer, receiver: Receiver, api: AgentClient, make_agent: Any
) -> None:
    hanging = _route(receiver, "hang")
    healthy = _route(receiver, "ok")
    other = AgentClient(make_agent("other-agent")[1])
    for _ in range(5):  # five requests to the hanging receiver go first
        _ask(other, hanging)
    wait_for(lambda: len(receiver.of("hang")) >= 1, 5, "the hanging receiver to be called")
    agent_id = Agent.objects.get(name="drill-agent").agent_id
    # What a concurrent insert by the same agent holds (a foreign key check).
    with HeldLock("SELECT 1 FROM agents_agent WHERE agent_id = %s FOR KEY SHARE", (agent_id,)):
        _, webhook_id, acknowledged = _ask(api, healthy)
        wait_for(lambda: receiver.arrival(webhook_id) is not None, 5, "the healthy webhook")
    assert receiver.arrival(webhook_id) - acknowledged <= 1.0  # type: ignore[operator]
    # The hanging receiver holds at most one worker at a time: the other four waited their turn.
    assert len(receiver.of("hang")) <= 2
    receiver.release()
    _no_duplicates(receiver)


def test_a_burst_to_a_slow_receiver_never_delays_a_healthy_one(
    stack: RedisServer, receiver: Receiver, api: AgentClient, make_agent: Any
) -> None:
    # A receiver that answers, slowly (2 s): healthy, so it keeps its slots, and 80 notifications
    # queue up for it. Waiting for its slots must not take the pool from everyone else.
    slow = _route(receiver, "slow")
    healthy = _route(receiver, "ok")
    other = AgentClient(make_agent("other-agent")[1])
    for _ in range(80):
        _ask(other, slow)
    late = []
    for _ in range(5):
        _, webhook_id, acknowledged = _ask(api, healthy)
        wait_for(lambda w=webhook_id: receiver.arrival(w) is not None, 10, "the healthy webhook")
        late.append(receiver.arrival(webhook_id) - acknowledged)  # type: ignore[operator]
        time.sleep(0.3)
    receiver.release()  # the slow one answers at once from now on
    assert max(late) <= 1.0, late
    _no_duplicates(receiver)


def test_a_delivery_found_locked_is_retried_not_dropped(
    stack: RedisServer, receiver: Receiver, api: AgentClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_id = _route(receiver, "ok")
    lost: list[str] = []
    monkeypatch.setattr(
        "approvals.tasks.publish_delivery", lambda delivery_id, countdown=None: lost.append(delivery_id)
    )
    _, webhook_id, _ = _ask(api, route_id)
    monkeypatch.undo()
    assert lost == [webhook_id]  # its publish was lost; now it is published while the row is held
    with HeldLock("SELECT 1 FROM approvals_delivery WHERE delivery_id = %s FOR UPDATE", (webhook_id,)):
        started = time.monotonic()
        assert publish_delivery(webhook_id)
        time.sleep(0.5)  # the worker finds the row locked meanwhile
    wait_for(lambda: receiver.arrival(webhook_id) is not None, 5, "the delivery once the lock is gone")
    assert receiver.arrival(webhook_id) - started <= 3  # type: ignore[operator]  # no beat runs here
    assert receiver.successes() == [webhook_id]


def test_failing_receivers_back_off_on_their_own_and_never_delay_a_healthy_one(
    stack: RedisServer, receiver: Receiver, api: AgentClient
) -> None:
    failing = {mode: _ask(api, _route(receiver, mode))[1] for mode in ("fail", "close", "hang")}
    _, healthy_id, acknowledged = _ask(api, _route(receiver, "ok"))
    wait_for(lambda: receiver.arrival(healthy_id) is not None, 5, "the healthy webhook")
    assert receiver.arrival(healthy_id) - acknowledged <= 1.0  # type: ignore[operator]
    receiver.release()
    for mode in ("fail", "close"):
        webhook_id = failing[mode]
        wait_for(lambda w=webhook_id: Delivery.objects.get(pk=w).status == "failed", 20, f"{mode} to fail")
        delivery = Delivery.objects.get(pk=webhook_id)
        assert delivery.attempts == 3
        hits = receiver.of(mode)
        assert {h[1] for h in hits} == {webhook_id} and len(hits) == 3  # one id, every retry
        gaps = [b[2] - a[2] for a, b in zip(hits, hits[1:], strict=False)]
        assert gaps[0] >= 0.25 and gaps[1] >= 0.55, gaps  # 300 ms, then 600 ms
    assert receiver.successes() == [healthy_id]


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_total_timeout(
    stack: RedisServer, receiver: Receiver, api: AgentClient
) -> None:
    # One byte a second never trips a per-read timeout; the attempt's total (5 s) must still hold.
    _, webhook_id, _ = _ask(api, _route(receiver, "drip"))
    wait_for(lambda: len(receiver.of("drip")) >= 1, 5, "the dripping receiver to be called")
    wait_for(lambda: webhook_id in receiver.hung_up, 20, "the worker to give up on the drip")
    held = receiver.hung_up[webhook_id] - receiver.of("drip")[0][2]
    assert held <= float(DRILL_ENV["TRACEMEM_DELIVERY_HTTP_TIMEOUT"]) + 1.5, held
    wait_for(lambda: Delivery.objects.get(pk=webhook_id).attempt_log != [], 5, "the attempt to be recorded")
    first = Delivery.objects.get(pk=webhook_id).attempt_log[0]
    assert "did not answer within" in first["error"], first
    receiver.release()
    assert receiver.successes() == []


def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_each_success_once(
    stack: RedisServer, worker: Process, beat: Process, receiver: Receiver, api: AgentClient
) -> None:
    route_id = _route(receiver, "ok")
    blocking = _route(receiver, "hang")
    _, hung_id, _ = _ask(api, blocking)
    wait_for(lambda: len(receiver.of("hang")) == 1, 5, "the worker to be inside a delivery")
    worker.kill()
    acknowledged = [_ask(api, route_id)[1] for _ in range(3)]  # requests keep being acknowledged
    receiver.release()
    worker.start(ready=" ready.", count=2)
    for webhook_id in acknowledged:
        wait_for(
            lambda w=webhook_id: Delivery.objects.get(pk=w).status == "delivered",
            30,
            "every acknowledged one",
        )
    # The interrupted delivery is retried with the same webhook-id once its lease ends.
    wait_for(lambda: Delivery.objects.get(pk=hung_id).status != "pending", 30, "the interrupted delivery")
    assert {h[1] for h in receiver.of("hang")} == {hung_id}
    assert sorted(receiver.successes()) == sorted(acknowledged)
    _no_duplicates(receiver)


def test_postgresql_connections_cut_again_and_again_lose_nothing_acknowledged(
    stack: RedisServer, beat: Process, receiver: Receiver, api: AgentClient
) -> None:
    route_id = _route(receiver, "ok")
    stop = threading.Event()
    cuts: list[int] = []

    def cut_repeatedly() -> None:
        while not stop.is_set():
            cuts.append(terminate_backends())  # the worker's, the beat's and this process's connections
            time.sleep(0.3)

    cutter = threading.Thread(target=cut_repeatedly, daemon=True)
    cutter.start()
    acknowledged: list[str] = []
    try:
        for _ in range(12):
            # What a real server does at the start of each request (the test client skips it):
            # a connection cut while idle is noticed and replaced.
            close_old_connections()
            decision = api.post(
                "/api/v1/decisions", {"intent": "finance.refund.issue", "automation_mode": "propose"}
            )
            if decision.status_code != 201:
                assert decision.status_code == 503 and decision.json()["error"]["code"] == "unavailable"
                continue
            decision_id = decision.json()["decision_id"]
            close_old_connections()
            answer = request_approval(api, decision_id, approval_route_id=route_id)
            if answer.status_code == 201:
                acknowledged.append(answer.json()["approval_id"])
            else:
                assert answer.status_code == 503 and answer["Retry-After"]
                applied = answer.json()["error"]["details"]["applied"]
                connection.close()
                recorded = Approval.objects.filter(decision_id=decision_id).first()
                # The answer tells the truth: applied means recorded, not applied means nothing was.
                if applied is True:
                    assert recorded is not None
                    acknowledged.append(recorded.approval_id)
                elif applied is False:
                    assert recorded is None and Decision.objects.get(pk=decision_id).status == "open"
            time.sleep(0.1)
    finally:
        stop.set()
        cutter.join(5)
    connection.close()
    assert sum(cuts) >= 3, "the drill did not cut connections"
    assert acknowledged, "no request got through at all"
    webhook_ids = list(
        Delivery.objects.filter(approval_id__in=acknowledged).values_list("delivery_id", flat=True)
    )
    assert len(webhook_ids) == len(acknowledged)
    for webhook_id in webhook_ids:
        wait_for(
            lambda w=webhook_id: Delivery.objects.get(pk=w).status == "delivered",
            30,
            "every acknowledged one",
        )
    assert sorted(receiver.successes()) == sorted(webhook_ids)


# --- scripts/worker.sh as a supervisor sees it -----------------------------------------------


@pytest.fixture
def own_worker(settings: Any, tmp_path: Path) -> Iterator[Process]:
    """scripts/worker.sh on a Redis of its own (the module's worker must not take its messages)."""
    server = RedisServer().start()
    use_broker(server.url)
    process = Process("worker.sh", tmp_path / "worker.log", process_env(server.url, **DRILL_ENV))
    try:
        yield process.start(ready=" ready.", count=2)
    finally:
        process.kill()
        server.stop()
        use_broker(settings.CELERY_BROKER_URL)


def _celery_children(pid: int) -> dict[str, int]:
    """The celery workers worker.sh started: ``{"deliveries": pid, "tasks": pid}``."""
    lines = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    children = {}
    for line in lines:
        child, _, args = line.strip().partition(" ")
        for name in ("deliveries", "tasks"):
            if f"-n {name}@" in args:
                children[name] = int(child)
    return children


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_worker_sh_on_sigterm_finishes_the_delivery_in_flight_and_stops_both_workers(
    own_worker: Process, receiver: Receiver, api: AgentClient
) -> None:
    assert own_worker.proc is not None
    children = _celery_children(own_worker.proc.pid)
    assert set(children) == {"deliveries", "tasks"}
    _, webhook_id, _ = _ask(api, _route(receiver, "slow"))  # the receiver answers after 2 s
    wait_for(lambda: len(receiver.of("slow")) == 1, 5, "the delivery to be in flight")
    own_worker.proc.send_signal(signal.SIGTERM)  # the script alone, as `docker stop` signals PID 1
    assert own_worker.proc.wait(20) == 143
    assert all(_gone(pid) for pid in children.values())
    delivery = Delivery.objects.get(pk=webhook_id)
    assert (delivery.status, delivery.attempts) == ("delivered", 1)  # finished, recorded, acknowledged
    assert receiver.successes() == [webhook_id]


def test_worker_sh_stops_the_other_worker_when_one_dies(own_worker: Process) -> None:
    assert own_worker.proc is not None
    children = _celery_children(own_worker.proc.pid)
    os.kill(children["deliveries"], signal.SIGKILL)
    # Never half a service: the script ends (non-zero) and takes the tasks worker with it, so the
    # supervisor (compose's restart policy) restarts the pair.
    assert own_worker.proc.wait(30) != 0
    assert _gone(children["tasks"])
