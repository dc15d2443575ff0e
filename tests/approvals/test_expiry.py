"""An approval is expired (and its decision rejected, fail closed) the moment ``expires_at`` passes,
whoever looks first: ``decision_get`` (REST and MCP), the reviewer API and the review UI report it
before the beat's tick has written anything, any call that touches the decision settles it, and the
tick then writes exactly what was reported (outcome ``expired``, ``resolved_at`` = ``expires_at``)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import Approval
from approvals.services import requests as approval_requests
from approvals.tasks import approvals_tick
from decisions.models import Decision, TraceEvent
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.mcp_helpers import mcp_post
from tracemem_core.actor import Actor
from tracemem_core.timefmt import iso_z

pytestmark = pytest.mark.django_db

STATE = ("status", "approval_status", "pending_approval_id", "approval_required")


def _pending(api: AgentClient, *, expires_in: float) -> tuple[str, str]:
    """A decision waiting on an approval whose deadline is ``expires_in`` seconds away."""
    make_route("route_finance")
    decision_id = open_decision(api, mode="propose")
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    # The shortest route expiry is 60 s; the test moves the deadline instead of waiting a minute.
    Approval.objects.filter(pk=approval_id).update(expires_at=timezone.now() + timedelta(seconds=expires_in))
    return decision_id, approval_id


def _state(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(body[k] for k in STATE)


def _mcp_get(key: str, decision_id: str) -> dict[str, Any]:
    return mcp_post(key, "decision_get", {"decision_id": decision_id}).json()["result"]["structuredContent"]


def test_decision_get_reports_expired_within_one_second_of_expires_at(
    api: AgentClient, agent_and_key: Any
) -> None:
    decision_id, approval_id = _pending(api, expires_in=1.0)
    expires_at = Approval.objects.get(pk=approval_id).expires_at
    url = f"/api/v1/decisions/{decision_id}"
    before = api.get(url).json()
    assert _state(before) == ("needs_approval", "pending", approval_id, True)
    seen_at = None
    while time.time() < expires_at.timestamp() + 3:
        body = api.get(url).json()
        if body["approval_status"] != "pending":
            seen_at = time.time()
            break
        time.sleep(0.05)
    assert seen_at is not None, "decision_get never reported the expiry"
    assert 0 <= seen_at - expires_at.timestamp() <= 1.0
    assert _state(body) == ("rejected", "expired", None, False)
    assert _state(_mcp_get(agent_and_key[1], decision_id)) == ("rejected", "expired", None, False)
    # Nothing was written yet: this is what the tick will write.
    assert Decision.objects.get(pk=decision_id).status == "needs_approval"
    assert Approval.objects.get(pk=approval_id).status == "pending"


def test_the_tick_then_writes_exactly_what_was_reported(api: AgentClient) -> None:
    reviewer = make_reviewer("rita", superuser=True)
    decision_id, approval_id = _pending(api, expires_in=0.2)
    time.sleep(0.3)
    reported = api.get(f"/api/v1/decisions/{decision_id}").json()
    reported_approval = reviewer.get(f"/api/v1/approvals/{approval_id}").json()
    assert (reported_approval["status"], reported_approval["resolved_at"]) == (
        "expired",
        iso_z(Approval.objects.get(pk=approval_id).expires_at),
    )
    assert approvals_tick.apply().get()["expired"] == 1
    written = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert _state(written) == _state(reported)
    approval = Approval.objects.get(pk=approval_id)
    assert (approval.status, approval.resolved_at, approval.resolution_channel) == (
        "expired",
        approval.expires_at,
        "expiry",
    )
    assert reviewer.get(f"/api/v1/approvals/{approval_id}").json() == reported_approval
    [event] = TraceEvent.objects.filter(decision_id=decision_id, type="approval_resolved")
    assert event.payload["outcome"] == "expired"
    assert event.payload["expired_at"] == iso_z(approval.expires_at)
    assert event.actor == {"kind": "system", "id": "system", "name": "approvals-expiry"}


def test_the_review_page_shows_the_expiry_before_the_tick_and_offers_no_vote(api: AgentClient) -> None:
    reviewer = make_reviewer("vera", superuser=True)
    decision_id, approval_id = _pending(api, expires_in=0.2)
    time.sleep(0.3)
    client = Client()
    client.force_login(reviewer.user)
    page = client.get(f"/review/{approval_id}/").content.decode()
    assert 'id="approval-status">expired</span>' in page
    assert 'name="decision" value="approve"' not in page
    refused = reviewer.approve(approval_id)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_state"
    assert Approval.objects.get(pk=approval_id).votes.count() == 0


def test_aborting_after_the_reported_expiry_records_the_expiry_not_a_cancellation(api: AgentClient) -> None:
    decision_id, approval_id = _pending(api, expires_in=0.2)
    time.sleep(0.3)
    closed = api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"})
    assert closed.status_code == 200, closed.content
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", "payload")
    )
    assert [t for t, _ in types][-2:] == ["approval_resolved", "close"]
    assert types[-2][1]["outcome"] == "expired"
    assert Approval.objects.get(pk=approval_id).status == "expired"
    assert approvals_tick.apply().get()["expired"] == 0  # already settled


def test_other_calls_after_the_reported_expiry_answer_as_for_a_rejected_decision(api: AgentClient) -> None:
    decision_id, _ = _pending(api, expires_in=0.2)
    time.sleep(0.3)
    commit = api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "commit"})
    assert commit.status_code == 409 and "rejected" in commit.json()["error"]["message"]
    again = request_approval(api, decision_id, approval_route_id="route_finance")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    assert "rejected" in again.json()["error"]["message"]
    context = api.post(f"/api/v1/decisions/{decision_id}/context", {"context": {"note": "still here"}})
    assert context.status_code == 201
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", flat=True)
    )
    assert types[-2:] == ["approval_resolved", "context"]
    assert Decision.objects.get(pk=decision_id).status == "rejected"


def test_expire_due_uses_the_same_rule_as_the_report(api: AgentClient) -> None:
    decision_id, approval_id = _pending(api, expires_in=30)
    assert approval_requests.approvals_expire_due(actor=Actor.system("test")) == 0
    assert api.get(f"/api/v1/decisions/{decision_id}").json()["approval_status"] == "pending"


def test_the_reviewer_api_lists_an_overdue_approval_under_expired_not_pending(api: AgentClient) -> None:
    reviewer = make_reviewer("lena", superuser=True)
    _, overdue = _pending(api, expires_in=0.2)
    time.sleep(0.3)

    def listed(status: str) -> dict[str, str]:
        body = reviewer.get(f"/api/v1/approvals?status={status}").json()
        items = body["approvals"] if isinstance(body, dict) else body
        return {item["approval_id"]: item["status"] for item in items}

    assert overdue not in listed("pending")  # the filter agrees with what every item says
    assert listed("expired") == {overdue: "expired"}
    approvals_tick.apply()
    assert listed("expired") == {overdue: "expired"} and overdue not in listed("pending")
