"""Issue 19, "Must show": a witness webhook receives each new checkpoint, signed (Standard Webhooks),
from the worker's tick through the outbox — here a real local receiver (pytest-httpserver)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks import Webhook

from approvals.models import WebhookEndpoint
from receiptlog.models import WitnessDelivery
from tests.conftest import AgentClient
from tests.receiptlog.test_server import (
    checkpoint_now,
    close_decision,
    fetch_checkpoint,
    keys,
    log_settings,  # noqa: F401 - autouse fixture
)
from tracemem_site.celery import app as celery_app
from tracemem_verify.log import consistency_from_document, open_log_checkpoint, verify_consistency_verdict

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def worker_inline(settings: Any) -> Iterator[None]:
    """The worker runs the deliveries the tick queues, in this process."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    celery_app.conf.task_always_eager = before


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def received(httpserver: Any, secret: str) -> list[dict[str, Any]]:
    """Every request the witness got, each verified as a receiver would (raises when unsigned)."""
    payloads = []
    for request, _ in httpserver.log:
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload = Webhook(secret).verify(request.get_data(as_text=True), headers)
        assert headers["webhook-id"] == payload["delivery_id"]
        payloads.append(payload)
    return payloads


def test_a_witness_receives_each_new_checkpoint_signed(
    api: AgentClient, httpserver: Any, settings: Any
) -> None:
    settings.TRACEMEM_LOG_WITNESSES = ["witness"]
    secret = whsec()
    WebhookEndpoint.objects.create(name="witness", url=httpserver.url_for("/witness"), signing_secret=secret)
    httpserver.expect_request("/witness", method="POST").respond_with_data("ok")

    close_decision(api)
    close_decision(api)
    assert checkpoint_now() == 2
    [first] = received(httpserver, secret)
    assert first["type"] == "checkpoint.created"
    assert (first["origin"], first["tree_size"]) == ("tracemem.test/log", 2)
    assert first["checkpoint"] == fetch_checkpoint()
    published = keys()
    assert open_log_checkpoint(first["checkpoint"], published).checkpoint.size == 2

    assert checkpoint_now() is None  # nothing new, nothing sent
    assert len(httpserver.log) == 1
    close_decision(api)
    assert checkpoint_now() == 3
    first_again, second = received(httpserver, secret)
    assert second["tree_size"] == 3 and second["delivery_id"] != first["delivery_id"]
    # What a witness does with them: check that the new one extends the one it holds.
    proof = Client().get(f"/api/v1/log/consistency?from=2&to={second['tree_size']}").json()
    verdict = verify_consistency_verdict(
        first["checkpoint"], second["checkpoint"], consistency_from_document(proof), published
    )
    assert verdict.ok, verdict.message
    assert set(WitnessDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    # A forged signature does not pass the receiver's check.
    request, _ = httpserver.log[0]
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Webhook(whsec()).verify(request.get_data(as_text=True), dict(request.headers))


def test_a_failing_witness_is_retried_with_backoff_and_never_holds_up_another(
    api: AgentClient, httpserver: Any, settings: Any
) -> None:
    settings.TRACEMEM_LOG_WITNESSES = ["down", "up"]
    settings.TRACEMEM_DELIVERY_BACKOFF_MS = 1000
    settings.TRACEMEM_DELIVERY_MAX_ATTEMPTS = 2
    secret = whsec()
    WebhookEndpoint.objects.create(name="down", url=httpserver.url_for("/down"), signing_secret=whsec())
    WebhookEndpoint.objects.create(name="up", url=httpserver.url_for("/up"), signing_secret=secret)
    httpserver.expect_request("/down").respond_with_data("boom", status=503)
    httpserver.expect_request("/up").respond_with_data("ok")

    close_decision(api)
    checkpoint_now()
    down = WitnessDelivery.objects.get(endpoint="down")
    up = WitnessDelivery.objects.get(endpoint="up")
    assert up.status == "delivered" and up.attempts == 1
    assert (down.status, down.attempts, down.last_error) == (
        "pending",
        1,
        "webhook receiver answered HTTP 503",
    )
    assert down.attempt_log[0]["retry_in_ms"] == 1000
    checkpoint_now()  # not due yet: the tick does not send it again
    assert WitnessDelivery.objects.get(pk=down.pk).attempts == 1
    WitnessDelivery.objects.filter(pk=down.pk).update(next_attempt_at=timezone.now())
    checkpoint_now()  # due: the tick re-dispatches it; the last attempt fails for good
    down.refresh_from_db()
    assert (down.status, down.attempts) == ("failed", 2)
    hits = [request.path for request, _ in httpserver.log]
    assert hits.count("/down") == 2 and hits.count("/up") == 1
    body = json.loads(httpserver.log[-1][0].get_data(as_text=True))
    assert body["delivery_id"] == down.delivery_id


def test_staff_see_checkpoints_and_witness_deliveries_read_only_in_the_admin(
    api: AgentClient, httpserver: Any, settings: Any, admin_client: Any
) -> None:
    settings.TRACEMEM_LOG_WITNESSES = ["witness"]
    WebhookEndpoint.objects.create(name="witness", url=httpserver.url_for("/w"), signing_secret=whsec())
    httpserver.expect_request("/w").respond_with_data("no", status=500)
    close_decision(api)
    checkpoint_now()
    delivery = WitnessDelivery.objects.get()
    page = admin_client.get("/admin/receiptlog/witnessdelivery/")
    assert page.status_code == 200 and delivery.delivery_id in page.content.decode()
    detail = admin_client.get(f"/admin/receiptlog/witnessdelivery/{delivery.pk}/change/").content.decode()
    assert "webhook receiver answered HTTP 500" in detail
    assert admin_client.get("/admin/receiptlog/checkpoint/1/change/").status_code == 200
    assert admin_client.get("/admin/receiptlog/checkpoint/add/").status_code == 403


def test_metrics_show_the_log_its_latest_checkpoint_and_witness_deliveries(
    api: AgentClient, httpserver: Any, settings: Any
) -> None:
    settings.TRACEMEM_METRICS_TOKEN = token = "metrics-" + secrets.token_hex(8)
    settings.TRACEMEM_LOG_WITNESSES = ["witness"]
    WebhookEndpoint.objects.create(name="witness", url=httpserver.url_for("/w"), signing_secret=whsec())
    httpserver.expect_request("/w").respond_with_data("ok")
    close_decision(api)
    close_decision(api)
    checkpoint_now()
    close_decision(api)  # not signed yet
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    assert "tracemem_receipt_log_leaves 3.0" in text
    assert "tracemem_receipt_log_checkpoint_size 2.0" in text
    assert "tracemem_receipt_log_checkpoint_age_seconds " in text
    assert 'tracemem_witness_deliveries{status="delivered"} 1.0' in text
    assert 'tracemem_witness_deliveries{status="failed"} 0.0' in text
