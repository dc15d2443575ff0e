"""The outbox under concurrency: a delivery is never lost, never sent twice, and the work a worker
does for one row stays bounded whatever holds it (a row locked forever, duplicate task messages).

The task body is run in-process (``deliver_delivery.run``) with its re-queueing captured, so each
test can follow a task's chain of re-queued messages link by link.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from approvals import tasks
from approvals.destinations import destination_key, gate
from approvals.models import Delivery, WebhookEndpoint
from approvals.services import outbox as approval_outbox
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.fault_helpers import HeldLock, wait_for
from tracemem_core.actor import Actor

WORKER = Actor.system("test-worker")


@pytest.fixture
def delivery(api: Any, httpserver: Any) -> Delivery:
    """One due webhook delivery to a receiver that answers 200."""
    WebhookEndpoint.objects.create(
        name="ops",
        url=httpserver.url_for("/hook"),
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    httpserver.expect_request("/hook").respond_with_data("ok")
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": "ops"}])
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    return Delivery.objects.get(approval_id=approval_id)


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[dict[str, Any]]:
    """What the task re-queues (instead of publishing it): one entry per message."""
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a worker: tasks re-queue themselves
    queued: list[dict[str, Any]] = []

    def publish(delivery_id: str, **options: Any) -> bool:
        queued.append({"id": delivery_id, **options})
        return True

    monkeypatch.setattr(tasks, "publish_delivery", publish)
    return queued


@pytest.mark.django_db(transaction=True)  # the lock is held by another session: rows must be committed
def test_a_row_locked_forever_is_retried_a_bounded_number_of_times_then_left_to_the_redispatch(
    delivery: Delivery, requeued: list[dict[str, Any]], httpserver: Any
) -> None:
    sql = "SELECT 1 FROM approvals_delivery WHERE delivery_id = %s FOR UPDATE"
    with HeldLock(sql, (delivery.delivery_id,)):
        tasks.deliver_delivery.run(delivery.delivery_id)
        links = 1
        while requeued and links < 500:
            message = requeued.pop()
            assert message["countdown"] == approval_outbox.BUSY_RETRY_MS / 1000  # looked at again soon ...
            tasks.deliver_delivery.run(message["id"], looks=message.get("looks", 0))
            links += 1
    assert links == approval_outbox.LOCKED_RETRIES + 1, (
        links
    )  # ... but not forever (was: every 250 ms for good)
    # Nothing was lost: still pending and due, so the beat's re-dispatch queues it again.
    assert Delivery.objects.filter(
        pk=delivery.pk, status="pending", attempts=0, next_attempt_at__lte=timezone.now()
    ).exists()
    assert approval_outbox.deliveries_redispatch_due(actor=WORKER) == 1
    assert requeued == [{"id": delivery.delivery_id, "countdown": None}]
    tasks.deliver_delivery.run(delivery.delivery_id)  # the lock is gone
    assert Delivery.objects.get(pk=delivery.pk).status == "delivered" and len(httpserver.log) == 1


@pytest.mark.django_db
def test_a_duplicate_message_for_an_already_deferred_delivery_starts_no_second_chain(
    delivery: Delivery, requeued: list[dict[str, Any]], httpserver: Any
) -> None:
    # The destination failed last time and its one attempt slot is taken: attempts are deferred.
    key = destination_key(delivery.channel, delivery.target)
    assert gate.enter(key, slots=1, wait_seconds=0)
    gate.leave(key, ok=False)
    assert gate.enter(key, slots=1, wait_seconds=0)
    try:
        tasks.deliver_delivery.run(delivery.delivery_id)
        assert len(requeued) == 1  # deferred: due again later, and this chain comes back then
        # The same delivery's second message (the beat re-dispatched it meanwhile, or Redis
        # redelivered it) finds it deferred already: it ends instead of looping alongside.
        tasks.deliver_delivery.run(delivery.delivery_id)
        assert len(requeued) == 1, requeued
    finally:
        gate.leave(key, ok=None)
        gate.leave(key, ok=True)  # healthy again for the tests after this one
    assert httpserver.log == []
    assert Delivery.objects.get(pk=delivery.pk).attempts == 0  # a deferral is not an attempt


@pytest.mark.django_db
def test_a_delivery_whose_destination_stays_busy_is_looked_at_less_and_less_often(
    delivery: Delivery, requeued: list[dict[str, Any]]
) -> None:
    key = destination_key(delivery.channel, delivery.target)
    assert gate.enter(key, slots=1, wait_seconds=0)  # the probe of a new destination is in flight
    try:
        waits, looks = [], 0
        for _ in range(6):
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # its time came
            tasks.deliver_delivery.run(delivery.delivery_id, looks=looks)
            message = requeued.pop()
            waits.append(message["countdown"])
            looks = message["looks"]
    finally:
        gate.leave(key, ok=None)
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert looks == 6 and Delivery.objects.get(pk=delivery.pk).attempts == 0


def test_at_most_as_many_attempts_as_a_destination_has_slots_wait_for_it() -> None:
    """Waiting holds a thread of the pool: a slow receiver's queue must not hold them all."""
    assert gate.enter("webhook:slow", slots=2, wait_seconds=0)
    gate.leave("webhook:slow", ok=True)  # it answered: healthy
    for _ in range(2):
        assert gate.enter("webhook:slow", slots=2, wait_seconds=0)  # both slots taken
    waiting = [
        threading.Thread(target=gate.enter, args=("webhook:slow",), kwargs={"slots": 2, "wait_seconds": 2})
    ]
    waiting.append(
        threading.Thread(target=gate.enter, args=("webhook:slow",), kwargs={"slots": 2, "wait_seconds": 2})
    )
    for thread in waiting:
        thread.start()
    wait_for(lambda: gate._destinations["webhook:slow"].waiting == 2, 2, "two attempts to wait")
    started = time.monotonic()
    assert gate.enter("webhook:slow", slots=2, wait_seconds=2) is False  # a third does not wait
    assert time.monotonic() - started < 0.1
    for thread in waiting:
        thread.join(5)


@pytest.mark.django_db(transaction=True)
def test_two_workers_taking_the_same_delivery_at_once_send_it_once(
    delivery: Delivery, requeued: list[dict[str, Any]], httpserver: Any
) -> None:
    start = threading.Barrier(2)
    results: list[Any] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(httpserver.log) == 1
    # One sent it; the other found nothing to do, or deferred it (a later look then finds it done).
    assert sorted(str(r.status) if r else "nothing" for r in results) in (
        ["delivered", "nothing"],
        ["delivered", "pending"],
    )
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1


@pytest.fixture(autouse=True)
def _fresh_gate() -> Iterator[None]:
    """Destination health is per process: start and leave each test with a gate that knows nothing."""
    gate._destinations.clear()
    yield
    gate._destinations.clear()
