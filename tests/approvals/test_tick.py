"""The periodic tick (approvals.tick; ``manage.py tick`` in the embedded default): expiry fails closed,
one bad approval never stops the others, and re-dispatch always runs (docs/contract/approvals.md)."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals import tasks
from approvals.models import Approval, Delivery, WebhookEndpoint
from approvals.services import requests as approval_requests
from approvals.tasks import approvals_tick
from decisions.models import Decision
from tests.appr_helpers import make_route, open_decision, request_approval
from tracemem_site.celery import app as celery_app

pytestmark = pytest.mark.django_db

WEBHOOK = [{"type": "webhook", "endpoint": "ops"}]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the re-dispatch hands to Celery (a broker outside this test)."""
    ids: list[str] = []

    def record(delivery_id: str, countdown: float | None = None) -> bool:
        ids.append(delivery_id)
        return True

    monkeypatch.setattr(tasks, "publish_delivery", record)
    return ids


def _due_approval(api: Any, *, minutes_ago: int) -> tuple[str, str]:
    decision_id = open_decision(api)
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 201, response.content
    approval_id = response.json()["approval_id"]
    Approval.objects.filter(pk=approval_id).update(expires_at=timezone.now() - timedelta(minutes=minutes_ago))
    return decision_id, approval_id


def _orphan(api: Any) -> tuple[str, str]:
    """What older versions left behind: a pending, overdue approval on an aborted decision."""
    decision_id, approval_id = _due_approval(api, minutes_ago=10)
    assert api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"}).status_code == 200
    Approval.objects.filter(pk=approval_id).update(status="pending", resolved_at=None, resolution_channel="")
    Delivery.objects.filter(approval_id=approval_id).update(status="pending")
    return decision_id, approval_id


def test_an_orphaned_approval_does_not_stop_the_tick(api: Any, published: list[str]) -> None:
    make_route("route_finance", channels=WEBHOOK)
    orphan_decision, orphan = _orphan(api)
    orphan_before = Decision.objects.get(pk=orphan_decision)
    decision_id, approval_id = _due_approval(api, minutes_ago=1)
    [delivery] = Delivery.objects.filter(approval_id=approval_id)

    assert approvals_tick() == {"expired": 1, "redispatched": 1}

    assert published == [delivery.delivery_id]
    assert Approval.objects.get(pk=approval_id).status == "expired"
    got = Decision.objects.get(pk=decision_id)
    assert (got.status, got.approval_status, got.pending_approval_id) == ("rejected", "expired", None)
    # The orphan is settled without touching its closed trace.
    assert Approval.objects.get(pk=orphan).status == "cancelled"
    assert list(Delivery.objects.filter(approval_id=orphan).values_list("status", flat=True)) == ["cancelled"]
    orphan_after = Decision.objects.get(pk=orphan_decision)
    assert (orphan_after.event_count, orphan_after.trace_head, orphan_after.status) == (
        orphan_before.event_count,
        orphan_before.trace_head,
        "aborted",
    )
    assert approvals_tick()["expired"] == 0


def test_expiry_skips_an_approval_that_fails_logs_its_id_and_continues(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, published: list[str]
) -> None:
    make_route("route_finance")
    _, broken = _due_approval(api, minutes_ago=5)
    _, fine = _due_approval(api, minutes_ago=1)
    real_expire = approval_requests.approval_expire

    def flaky(*, actor: Any, approval_id: str) -> bool:
        if approval_id == broken:
            raise RuntimeError("database hiccup")
        return real_expire(actor=actor, approval_id=approval_id)

    monkeypatch.setattr(approval_requests, "approval_expire", flaky)

    with caplog.at_level(logging.ERROR, logger="approvals.services"):
        assert approvals_tick() == {"expired": 1, "redispatched": 0}

    assert Approval.objects.get(pk=fine).status == "expired"
    assert Approval.objects.get(pk=broken).status == "pending"
    assert [r.getMessage() for r in caplog.records] == [
        f"could not expire approval {broken}; skipping it until the next tick"
    ]


def test_redispatch_runs_even_when_the_expiry_step_fails(
    api: Any, monkeypatch: pytest.MonkeyPatch, published: list[str]
) -> None:
    make_route("route_finance", channels=WEBHOOK)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    [delivery] = Delivery.objects.filter(approval_id=approval_id)

    def broken(*, actor: Any) -> int:
        raise RuntimeError("expiry is broken")

    monkeypatch.setattr(approval_requests, "approvals_expire_due", broken)

    assert approvals_tick() == {"expired": 0, "redispatched": 1}
    assert published == [delivery.delivery_id]


@pytest.fixture
def tasks_inline() -> Iterator[None]:
    """The embedded default: no broker, so a re-dispatched delivery runs inline in the tick process."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def test_tick_once_expires_a_due_approval_and_redispatches_a_due_delivery(
    api: Any, httpserver: Any, tasks_inline: None
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    WebhookEndpoint.objects.create(name="ops", url=httpserver.url_for("/hook"), signing_secret=secret)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    make_route("route_finance", channels=WEBHOOK)
    make_route("route_quiet")
    overdue_decision = open_decision(api)
    overdue = request_approval(api, overdue_decision, approval_route_id="route_quiet").json()["approval_id"]
    Approval.objects.filter(pk=overdue).update(expires_at=timezone.now() - timedelta(seconds=1))
    waiting_decision = open_decision(api)
    waiting = request_approval(api, waiting_decision, approval_route_id="route_finance").json()["approval_id"]
    [delivery] = Delivery.objects.filter(approval_id=waiting)
    assert (delivery.status, delivery.attempts) == ("pending", 0)  # its publish was lost
    out = StringIO()

    call_command("tick", "--once", stdout=out)

    assert out.getvalue() == (
        "tick: approvals.tick {'expired': 1, 'redispatched': 1}\n"
        # The receipt log's first checkpoint (of the empty log: nothing was closed).
        "tick: receiptlog.tick {'checkpoint_size': 0, 'redispatched': 0}\n"
    )
    assert Approval.objects.get(pk=overdue).status == "expired"
    assert api.get(f"/api/v1/decisions/{overdue_decision}").json()["approval_status"] == "expired"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert [r.headers["webhook-id"] for r, _ in httpserver.log] == [delivery.delivery_id]
    assert Approval.objects.get(pk=waiting).status == "pending"


def test_tick_refuses_a_non_positive_interval() -> None:
    with pytest.raises(Exception, match="--every must be a positive number of seconds"):
        call_command("tick", "--every", "0", "--once")
