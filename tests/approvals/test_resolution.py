"""Approval requests and their resolution through the REST doors (docs/contract/tools.md, docs/contract/states.md, docs/contract/approvals.md, docs/contract/admin.md)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Approval, ApprovalRoute, Delivery, Vote
from approvals.services import credentials as approval_credentials
from approvals.services import requests as approval_requests
from approvals.tasks import approvals_tick
from decisions.models import Decision, TraceEvent
from decisions.services import ensure_writable
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidState
from tracemem_core.ids import has_format

pytestmark = pytest.mark.django_db


def events_of(decision_id: str, type_: str) -> list[TraceEvent]:
    return list(TraceEvent.objects.filter(decision_id=decision_id, type=type_).order_by("seq"))


def test_request_records_approval_moves_decision_and_queues_one_delivery_per_channel(api: Any) -> None:
    make_route(
        "route_finance",
        channels=[{"type": "email"}, {"type": "webhook", "endpoint": "ops"}],
        expires_in_seconds=3600,
    )
    decision_id = open_decision(api)
    before = timezone.now()
    response = request_approval(
        api,
        decision_id,
        title="Refund 900 EUR",
        message="customer asks; api_key=sk-abcdefghijklmnopqrstuvwx",
        approval_route_id="route_finance",
    )
    assert response.status_code == 201, response.content
    result = response.json()
    assert set(result) == {"approval_id", "status", "expires_at", "route_id", "delivery"}
    assert has_format(result["approval_id"], "appr_")
    assert result["status"] == "pending"
    assert result["route_id"] == "route_finance"
    assert result["delivery"]["status"] == "pending"
    assert result["delivery"]["channels"] == [
        {"channel": "email", "status": "pending"},
        {"channel": "webhook", "status": "pending"},
    ]
    approval = Approval.objects.get(pk=result["approval_id"])
    assert "sk-abcdef" not in approval.message and "[redacted]" in approval.message
    assert before + timedelta(seconds=3599) < approval.expires_at <= timezone.now() + timedelta(seconds=3600)
    assert Delivery.objects.filter(approval=approval).count() == 2

    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert got["status"] == "needs_approval"
    assert got["approval_status"] == "pending"
    assert got["pending_approval_id"] == result["approval_id"]
    assert got["delivery"] == result["delivery"]
    [event] = events_of(decision_id, "approval_requested")
    assert event.payload["approval_id"] == result["approval_id"]
    assert event.payload["route_id"] == "route_finance"
    assert event.payload["channels"] == ["email", "webhook"]


def test_second_request_while_pending_is_conflict_and_changes_nothing(api: Any) -> None:
    make_route("route_finance")
    decision_id = open_decision(api)
    first = request_approval(api, decision_id, approval_route_id="route_finance").json()
    count = Decision.objects.get(pk=decision_id).event_count
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert first["approval_id"] in response.json()["error"]["message"]
    assert Approval.objects.filter(decision_id=decision_id).count() == 1
    assert Decision.objects.get(pk=decision_id).event_count == count


def test_route_falls_back_to_exception_route_then_default(api: Any) -> None:
    make_route("route_default", is_default=True)
    make_route("route_finance")
    first = open_decision(api)
    assert request_approval(api, first).json()["route_id"] == "route_default"
    second = open_decision(api)
    Decision.objects.filter(pk=second).update(exception_route_id="route_finance")
    assert request_approval(api, second).json()["route_id"] == "route_finance"


def test_unknown_route_is_invalid_argument_and_decision_stays_open(api: Any) -> None:
    decision_id = open_decision(api)
    response = request_approval(api, decision_id, approval_route_id="route_nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_argument"
    assert response.json()["error"]["details"]["field"] == "approval_route_id"
    assert Decision.objects.get(pk=decision_id).status == "open"
    assert not Approval.objects.exists()


def test_bad_arguments_are_invalid_argument_not_500(api: Any) -> None:
    make_route("route_finance", is_default=True, expires_in_seconds=600)
    decision_id = open_decision(api)
    for body, field in [
        ({"expires_in_seconds": 601}, "expires_in_seconds"),
        ({"expires_in_seconds": "soon"}, "expires_in_seconds"),
        ({"require_rationale": "yes"}, "require_rationale"),
        ({"title": 12}, "title"),
    ]:
        response = request_approval(api, decision_id, **body)
        assert response.status_code == 400, body
        assert response.json()["error"]["details"]["field"] == field
    assert not Approval.objects.exists()


def test_another_agents_decision_is_not_found(api: Any, make_agent: Any) -> None:
    from tests.conftest import AgentClient

    make_route("route_finance", is_default=True)
    _, other_key = make_agent("intruder")
    decision_id = open_decision(api)
    response = request_approval(AgentClient(other_key), decision_id)
    assert response.status_code == 404
    assert not Approval.objects.exists()


def test_quorum_two_of_three_grants_on_second_approve(api: Any) -> None:
    route = make_route("route_finance", required_approvals=2)
    alice, bob, carol = (make_reviewer(n, route.approver_group) for n in ("alice", "bob", "carol"))
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]

    first = alice.approve(approval_id, "fine")
    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert api.get(f"/api/v1/decisions/{decision_id}").json()["status"] == "needs_approval"
    second = bob.approve(approval_id, "agreed")
    assert second.json()["status"] == "approved"
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert (got["status"], got["approval_status"], got["pending_approval_id"]) == (
        "approved",
        "approved",
        None,
    )
    late = carol.approve(approval_id)
    assert late.status_code == 409 and late.json()["error"]["code"] == "invalid_state"
    [resolved] = events_of(decision_id, "approval_resolved")
    assert resolved.payload["outcome"] == "approved"
    assert [a["name"] for a in resolved.payload["approvers"]] == ["alice", "bob"]
    assert [(v["name"], v["channel"], v["rationale"]) for v in resolved.payload["votes"]] == [
        ("alice", "api", "fine"),
        ("bob", "api", "agreed"),
    ]
    votes = events_of(decision_id, "approval_vote")
    assert [(e.actor["name"], e.payload["vote"]) for e in votes] == [("alice", "approve"), ("bob", "approve")]
    ensure_writable(Decision.objects.get(pk=decision_id))  # the grant opens writes


def test_any_eligible_reject_vetoes(api: Any) -> None:
    route = make_route("route_finance", required_approvals=2)
    alice, bob = make_reviewer("alice", route.approver_group), make_reviewer("bob", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    assert alice.approve(approval_id).json()["status"] == "pending"
    assert bob.reject(approval_id, "too risky").json()["status"] == "rejected"
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert (got["status"], got["approval_status"]) == ("rejected", "rejected")
    [resolved] = events_of(decision_id, "approval_resolved")
    assert resolved.payload["rejected_by"] == [{"id": f"user_{bob.user.pk}", "name": "bob"}]


def test_rationale_required_refuses_a_bare_vote(api: Any) -> None:
    route = make_route("route_finance", require_rationale=True)
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    response = alice.approve(approval_id, "   ")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == "rationale"
    assert not Vote.objects.exists()
    assert alice.approve(approval_id, "checked the invoice").json()["status"] == "approved"


def test_agent_owner_may_not_vote_unless_route_allows(make_agent: Any) -> None:
    from tests.conftest import AgentClient

    route = make_route("route_finance")
    owner = make_reviewer("owner", route.approver_group)
    _, key = make_agent("owned", owner=owner.user)
    api = AgentClient(key)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    response = owner.approve(approval_id)
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert not Vote.objects.exists()
    assert Approval.objects.get(pk=approval_id).status == "pending"
    # The route's rules are frozen per approval: allowing the owner now changes only later requests.
    ApprovalRoute.objects.filter(pk=route.pk).update(allow_agent_owner=True)
    assert owner.approve(approval_id).status_code == 403
    api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"})
    later = request_approval(api, open_decision(api), approval_route_id="route_finance").json()["approval_id"]
    assert owner.approve(later).json()["status"] == "approved"


def test_double_vote_is_refused_across_channels(api: Any) -> None:
    route = make_route("route_finance", required_approvals=2)
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    assert alice.approve(approval_id).status_code == 200
    again = approval_requests.approval_vote
    with pytest.raises(Exception) as caught:
        again(actor=Actor.for_user(alice.user), approval_id=approval_id, decision="approve", channel="slack")
    assert str(caught.value).startswith("[conflict]")
    response = alice.approve(approval_id)
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert Vote.objects.count() == 1


def test_non_member_refused_superuser_eligible_everywhere(api: Any) -> None:
    make_route("route_finance")
    outsider = make_reviewer("mallory")
    root = make_reviewer("root", superuser=True)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    # An approval the outsider cannot see is not found for their vote either (issue 13).
    response = outsider.approve(approval_id)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert outsider.get(f"/api/v1/approvals/{approval_id}").status_code == 404
    assert root.approve(approval_id).json()["status"] == "approved"


def test_reviewer_lists_pending_and_reads_one(api: Any) -> None:
    route = make_route("route_finance")
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance", title="T").json()[
        "approval_id"
    ]
    listed = alice.get("/api/v1/approvals?status=pending").json()
    assert listed["count"] == 1 and listed["approvals"][0]["approval_id"] == approval_id
    one = alice.get(f"/api/v1/approvals/{approval_id}").json()
    assert (one["title"], one["decision_id"], one["votes"]) == ("T", decision_id, [])
    assert alice.get("/api/v1/approvals?status=bogus").json()["error"]["code"] == "invalid_argument"
    assert api.get("/api/v1/approvals").status_code == 401  # an agent key is not a reviewer credential


def test_expiry_rejects_fail_closed_and_writes_stay_blocked(api: Any) -> None:
    route = make_route("route_finance")
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    Approval.objects.filter(pk=approval_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = alice.approve(approval_id)
    assert response.status_code == 409 and not Vote.objects.exists()
    assert approvals_tick.apply().get()["expired"] == 1
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert (got["status"], got["approval_status"]) == ("rejected", "expired")
    assert Approval.objects.get(pk=approval_id).status == "expired"
    with pytest.raises(InvalidState):
        ensure_writable(Decision.objects.get(pk=decision_id))
    [resolved] = events_of(decision_id, "approval_resolved")
    assert resolved.payload["outcome"] == "expired" and resolved.actor["kind"] == "system"
    assert approvals_tick.apply().get()["expired"] == 0  # final: nothing happens twice


def test_webhook_credential_resolves_and_bad_credential_is_401(api: Any) -> None:
    route = make_route("route_finance")
    bot = make_reviewer("hookbot", route.approver_group)
    _, secret = approval_credentials.webhook_credential_create(
        actor=Actor.system(), user=bot.user, name="ops"
    )
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    from django.test import Client

    path = f"/api/v1/approvals/{approval_id}/resolve"
    forged = Client().post(
        path, {"decision": "approve"}, content_type="application/json", HTTP_AUTHORIZATION="Bearer tmwh_nope"
    )
    assert forged.status_code == 401 and not Vote.objects.exists()
    ok = Client().post(
        path,
        {"decision": "approve", "rationale": "ticket OPS-1"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    assert ok.json()["votes"][0]["channel"] == "webhook"


@pytest.mark.django_db(transaction=True)
def test_concurrent_approve_and_reject_give_exactly_one_outcome(make_agent: Any) -> None:
    from tests.conftest import AgentClient

    route = make_route("route_finance")
    alice, bob = make_reviewer("alice", route.approver_group), make_reviewer("bob", route.approver_group)
    _, key = make_agent("racer")
    api = AgentClient(key)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def vote(name: str, user: Any, choice: str) -> None:
        try:
            barrier.wait()
            approval_requests.approval_vote(
                actor=Actor.for_user(user), approval_id=approval_id, decision=choice
            )
            outcomes[name] = "ok"
        except Exception as exc:
            outcomes[name] = str(exc)[:40]
        finally:
            connection.close()

    threads = [
        threading.Thread(target=vote, args=("alice", alice.user, "approve")),
        threading.Thread(target=vote, args=("bob", bob.user, "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.split("]")[0] for o in outcomes.values()) == ["[invalid_state", "ok"]
    approval = Approval.objects.get(pk=approval_id)
    decision = Decision.objects.get(pk=decision_id)
    assert approval.status in ("approved", "rejected")
    assert decision.status == approval.status
    assert Vote.objects.filter(approval_id=approval_id).count() == 1
    assert TraceEvent.objects.filter(decision_id=decision_id, type="approval_resolved").count() == 1
