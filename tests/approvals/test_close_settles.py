"""Closing a decision settles its pending approval in the same transaction (docs/contract/states.md, docs/contract/approvals.md; docs/approvals.md)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from approvals.models import Approval, Delivery
from approvals.services import outbox as approval_outbox
from decisions.models import Decision, TraceEvent
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tracemem_core.actor import Actor
from tracemem_verify.chain import verify_chain

pytestmark = pytest.mark.django_db

TWO_CHANNELS = [{"type": "email"}, {"type": "webhook", "endpoint": "ops"}]


def _pending(api: Any) -> tuple[str, str]:
    make_route("route_finance", channels=TWO_CHANNELS)
    decision_id = open_decision(api)
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 201, response.content
    return decision_id, response.json()["approval_id"]


def _abort(api: Any, decision_id: str) -> Any:
    return api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort", "reason": "gave up"})


def test_abort_cancels_the_pending_approval_before_the_close_event(api: Any) -> None:
    decision_id, approval_id = _pending(api)

    response = _abort(api, decision_id)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "aborted"
    approval = Approval.objects.get(pk=approval_id)
    assert approval.status == "cancelled"
    assert approval.resolution_channel == "close"
    assert approval.resolved_at is not None
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", flat=True)
    )
    assert types == ["created", "approval_requested", "approval_resolved", "close"]
    resolved = TraceEvent.objects.get(decision_id=decision_id, type="approval_resolved")
    assert resolved.payload == {
        "approval_id": approval_id,
        "outcome": "cancelled",
        "reason": "decision aborted",
        "channel": "close",
        "votes": [],
        "approvers": [],
        "rejected_by": [],
    }
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert got["status"] == "aborted"
    assert got["approval_status"] is None
    assert got["pending_approval_id"] is None
    assert got["delivery"] is None
    assert sorted(Delivery.objects.filter(approval_id=approval_id).values_list("channel", "status")) == [
        ("email", "cancelled"),
        ("webhook", "cancelled"),
    ]
    trace = api.get(f"/api/v1/decisions/{decision_id}/trace").json()
    assert verify_chain(decision_id, trace["events"]) is None


def test_cancelled_approval_keeps_votes_already_cast(api: Any) -> None:
    decision_id, approval_id = _pending(api)
    Approval.objects.filter(pk=approval_id).update(required_approvals=2)
    group = Approval.objects.get(pk=approval_id).route.approver_group
    reviewer = make_reviewer("rev1", group)
    assert reviewer.approve(approval_id, "fine by me").status_code == 200

    assert _abort(api, decision_id).status_code == 200

    resolved = TraceEvent.objects.get(decision_id=decision_id, type="approval_resolved")
    assert resolved.payload["outcome"] == "cancelled"
    assert resolved.payload["votes"] == [
        {
            "id": f"user_{reviewer.user.pk}",
            "name": "rev1",
            "vote": "approve",
            "channel": "api",
            "rationale": "fine by me",
        }
    ]


def test_cancelled_deliveries_are_never_sent_or_redispatched(api: Any) -> None:
    decision_id, approval_id = _pending(api)
    assert _abort(api, decision_id).status_code == 200

    system = Actor.system("test")
    assert approval_outbox.deliveries_redispatch_due(actor=system) == 0
    for delivery in Delivery.objects.filter(approval_id=approval_id):
        assert approval_outbox.delivery_attempt(actor=system, delivery_id=delivery.delivery_id) is None
    assert list(Delivery.objects.filter(approval_id=approval_id).values_list("status", "attempts")) == [
        ("cancelled", 0),
        ("cancelled", 0),
    ]


def test_commit_refused_while_needs_approval_leaves_the_approval_pending(api: Any) -> None:
    decision_id, approval_id = _pending(api)
    before = Decision.objects.get(pk=decision_id)

    response = api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "commit"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    after = Decision.objects.get(pk=decision_id)
    assert (after.status, after.event_count, after.trace_head) == ("needs_approval", 2, before.trace_head)
    assert (after.approval_status, after.pending_approval_id) == ("pending", approval_id)
    assert Approval.objects.get(pk=approval_id).status == "pending"
    assert set(Delivery.objects.filter(approval_id=approval_id).values_list("status", flat=True)) == {
        "pending"
    }


def test_abort_without_a_pending_approval_only_closes(api: Any) -> None:
    decision_id = open_decision(api)
    assert _abort(api, decision_id).status_code == 200
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", flat=True)
    )
    assert types == ["created", "close"]


def test_cancelled_approval_leaves_the_queue_and_its_page_is_read_only(api: Any) -> None:
    decision_id, approval_id = _pending(api)
    client = Client()
    client.force_login(make_reviewer("boss", superuser=True).user)
    assert [r["approval"].approval_id for r in client.get("/review/").context["rows"]] == [approval_id]

    assert _abort(api, decision_id).status_code == 200

    assert client.get("/review/").context["rows"] == []
    assert client.get("/review/count/").content == b""
    body = client.get(f"/review/{approval_id}/").content.decode()
    assert 'id="approval-status">cancelled</span>' in body
    assert 'id="cancelled-note"' in body
    assert 'id="vote-form"' not in body and ">Approve</button>" not in body
    listed = client.get("/api/v1/approvals", {"status": "cancelled"}).json()
    assert [a["approval_id"] for a in listed["approvals"]] == [approval_id]
    assert listed["approvals"][0]["delivery"]["status"] == "cancelled"
