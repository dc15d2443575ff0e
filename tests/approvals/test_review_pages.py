"""Review queue and approval page through the Django test client (the browser tests cover the flow)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from agents.models import Agent
from approvals.models import Approval, Vote
from decisions.models import TraceEvent
from tests.perm_helpers import make_staff
from tests.ui_scenario import SECRET, decision_needing_approval, make_reviewer, make_route

pytestmark = pytest.mark.django_db


def _client(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_queue_lists_pending_approval_with_votes_and_count(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route(required=2)
    agent, _ = make_agent("queue-agent")
    decision, approval = decision_needing_approval(agent)
    client = _client(make_reviewer("rev1"))
    page = client.get("/review/")
    rows = page.context["rows"]
    assert [r["approval"].approval_id for r in rows] == [approval.approval_id]
    body = page.content.decode()
    assert "Refund 250 EUR" in body and "queue-agent" in body and "route_refunds" in body
    assert "0 approve · 0 reject · 2 needed" in body
    assert client.get("/review/count/").content == b"1"
    partial = client.get("/review/", HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and approval.approval_id.encode() in partial.content
    assert client.get("/review/", {"intent": "infra."}).context["rows"] == []


def test_empty_queue_says_nothing_is_waiting(make_agent: Any) -> None:
    make_route()
    page = _client(make_reviewer("rev1")).get("/review/")
    assert "Nothing is waiting for review." in page.content.decode()


def test_approval_page_is_redacted_and_shows_the_evaluation_rationale(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    agent, _ = make_agent("page-agent")
    decision, approval = decision_needing_approval(agent)
    body = _client(make_reviewer("rev1")).get(f"/review/{approval.approval_id}/").content.decode()
    assert SECRET not in body
    assert "[redacted]" in body
    assert "refunds of 100 or more need a human" in body
    assert 'name="rationale"' in body and ">Approve</button>" in body and ">Reject</button>" in body


def test_agent_owner_sees_why_and_no_buttons(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    make_route()
    owner = make_reviewer("owner")
    agent, _ = make_agent("owned-agent", owner=owner)
    _, approval = decision_needing_approval(agent)
    body = _client(owner).get(f"/review/{approval.approval_id}/").content.decode()
    assert "You own the agent that asked" in body
    assert ">Approve</button>" not in body and ">Reject</button>" not in body


def test_reviewer_outside_the_route_group_sees_why_and_no_buttons(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:

    make_route()
    agent, _ = make_agent("group-agent")
    _, approval = decision_needing_approval(agent)
    outsider = make_staff("outsider", "approvals.view_approval", password="x")
    body = _client(outsider).get(f"/review/{approval.approval_id}/").content.decode()
    assert "Only members of the group &#x27;refund-reviewers&#x27; may vote" in body
    assert ">Approve</button>" not in body


def test_vote_post_without_csrf_token_is_refused_and_changes_nothing(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    agent, _ = make_agent("csrf-agent")
    _, approval = decision_needing_approval(agent)
    client = _client(make_reviewer("rev1"), enforce_csrf_checks=True)
    response = client.post(
        f"/review/{approval.approval_id}/vote/", {"decision": "approve", "rationale": "ok"}
    )
    assert response.status_code == 403
    assert not Vote.objects.exists()
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_rationale_required_error_keeps_the_approval_pending(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route(rationale=True)
    agent, _ = make_agent("why-agent")
    decision, approval = decision_needing_approval(agent)
    events_before = TraceEvent.objects.filter(decision=decision).count()
    client = _client(make_reviewer("rev1"))
    response = client.post(
        f"/review/{approval.approval_id}/vote/", {"decision": "approve", "rationale": " "}, follow=True
    )
    assert "[invalid_argument] this approval requires a rationale" in response.content.decode()
    approval.refresh_from_db()
    assert approval.status == "pending" and not Vote.objects.exists()
    assert TraceEvent.objects.filter(decision=decision).count() == events_before


def test_second_vote_by_same_reviewer_is_blocked_with_a_reason(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route(required=2)
    agent, _ = make_agent("twice-agent")
    _, approval = decision_needing_approval(agent)
    client = _client(make_reviewer("rev1"))
    client.post(f"/review/{approval.approval_id}/vote/", {"decision": "approve", "rationale": "fine"})
    page = client.get(f"/review/{approval.approval_id}/").content.decode()
    assert "You have already voted on this approval." in page and ">Approve</button>" not in page
    response = client.post(f"/review/{approval.approval_id}/vote/", {"decision": "approve"}, follow=True)
    assert "[conflict]" in response.content.decode()
    assert Vote.objects.count() == 1
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_routes_pages_list_quorum_group_and_pending(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    make_route(required=2, rationale=True)
    agent, _ = make_agent("route-agent")
    decision_needing_approval(agent)

    client = _client(make_staff("boss", "approvals.view_approvalroute", password="x"))
    listing = client.get("/routes/")
    route = listing.context["routes"][0]
    assert (route.route_id, route.pending, route.required_approvals) == ("route_refunds", 1, 2)
    detail = client.get("/routes/route_refunds/").content.decode()
    assert "refund-reviewers" in detail and "required" in detail
    assert client.get("/routes/nope/").status_code == 404


def test_products_pages_are_for_staff(make_agent: Any) -> None:

    reviewer = _client(make_reviewer("rev1"))
    response = reviewer.get("/products/")
    assert response.status_code == 403
    assert "you need the permission products.view_dataproduct" in response.content.decode()
    staff = _client(make_staff("boss", "products.view_dataproduct", password="x"))
    page = staff.get("/products/")
    assert page.status_code == 200 and "No data products yet." in page.content.decode()
    assert staff.get("/products/missing/").status_code == 404
