"""Approval rules are frozen at request time (issue 11, finding 4).

An approval keeps its route's rules (eligible group, quorum, allow_agent_owner, require_rationale,
expiry) and the agent's owner as they were when it was requested. Editing the route or the agent
afterwards changes nothing for it: not the vote, not the review page, not who gets the email.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from agents.models import Agent
from approvals.models import Approval, ApprovalRoute, Delivery, Vote
from approvals.services import outbox as approval_outbox
from decisions.models import TraceEvent
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.conftest import AgentClient
from tests.perm_helpers import TokenClient, make_staff
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
ROUTE = "/api/v1/admin/routes/route_finance"


def _trace(decision_id: str) -> list[tuple[int, str]]:
    return list(TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("seq", "hash"))


def _pending(agent_key: str) -> tuple[str, str]:
    api = AgentClient(agent_key)
    decision_id = open_decision(api)
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 201, response.content
    return decision_id, response.json()["approval_id"]


@pytest.fixture
def group() -> Group:
    return Group.objects.create(name="finance-approvers")


def test_owner_who_loosens_the_route_cannot_approve_their_own_agents_pending_request(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    # The finding: the agent's owner (staff, allowed to edit routes, in the approvers' group)
    # PATCHes the route to allow_agent_owner and then approves their own agent's request.
    owner = make_staff("olivia", "approvals.manage_routes")
    owner.groups.add(group)
    make_route("route_finance", group=group, allow_agent_owner=False)
    _, key = make_agent("owned-bot", owner=owner)
    decision_id, approval_id = _pending(key)
    trace_before = _trace(decision_id)
    olivia = TokenClient(owner)

    patched = olivia.patch(ROUTE, {"allow_agent_owner": True})
    assert patched.status_code == 403, patched.content  # letting owners vote is a superuser's call
    assert patched.json()["error"]["details"] == {"permission": "superuser"}
    assert ApprovalRoute.objects.get(route_id="route_finance").allow_agent_owner is False
    # Even when a superuser loosens the route, the pending request keeps the rules it was asked under.
    assert TokenClient(_root()).patch(ROUTE, {"allow_agent_owner": True}).status_code == 200

    vote = olivia.post(f"/api/v1/approvals/{approval_id}/approve", {"rationale": "looks fine to me"})

    assert vote.status_code == 403, vote.content
    assert vote.json()["error"]["code"] == "permission_denied"
    assert "own the agent" in vote.json()["error"]["message"]
    approval = Approval.objects.get(pk=approval_id)
    assert approval.status == "pending" and approval.allow_agent_owner is False
    assert not Vote.objects.filter(approval=approval).exists()
    assert _trace(decision_id) == trace_before


def _root() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-12345")


def test_a_new_request_after_the_edit_follows_the_new_rule(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    owner = make_staff("olivia", "approvals.manage_routes")
    owner.groups.add(group)
    make_route("route_finance", group=group, allow_agent_owner=False)
    _, key = make_agent("owned-bot", owner=owner)
    assert TokenClient(_root()).patch(ROUTE, {"allow_agent_owner": True}).status_code == 200

    _, approval_id = _pending(key)
    vote = TokenClient(owner).post(f"/api/v1/approvals/{approval_id}/approve")

    assert vote.status_code == 200, vote.content
    assert vote.json()["status"] == "approved"


def _routes() -> list[Any]:
    return list(ApprovalRoute.objects.values().order_by("route_id"))


def test_a_route_editor_cannot_make_agent_owners_eligible_through_any_route_or_door(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    """Beyond the pending request: a route manager who owns an agent created a second route with
    allow_agent_owner (the agent picks its route by approval_route_id), or moved an owner-friendly
    route to a group of theirs, and then approved their own agent's next request. Whether owners may
    vote on their agents' requests, and who decides on a route that lets them, is a superuser's call."""
    mine = Group.objects.create(name="olivias-friends")
    owner = make_staff(
        "olivia", "approvals.manage_routes", "approvals.view_approvalroute", password="pw-olivia-1"
    )
    owner.groups.add(group, mine)
    make_route("route_finance", group=group, allow_agent_owner=False)
    make_route("route_lenient", group=group, allow_agent_owner=True)
    _, key = make_agent("owned-bot", owner=owner)
    olivia = TokenClient(owner)
    before = _routes()

    for method, path, body in (
        (
            "post",
            "/api/v1/admin/routes",
            {"route_id": "route_mine", "approver_group": "olivias-friends", "allow_agent_owner": True},
        ),
        ("patch", ROUTE, {"allow_agent_owner": True}),
        ("patch", "/api/v1/admin/routes/route_lenient", {"approver_group": "olivias-friends"}),
        ("patch", "/api/v1/admin/routes/route_lenient", {"required_approvals": 2}),
    ):
        refused = getattr(olivia, method)(path, body)
        assert refused.status_code == 403, (path, body, refused.content)
        assert refused.json()["error"]["code"] == "permission_denied"
        assert "allow_agent_owner" in refused.json()["error"]["message"]
    browser = Client()
    browser.force_login(owner)
    page = browser.post(
        "/admin/approvals/approvalroute/add/",
        {
            "route_id": "route_mine",
            "name": "mine",
            "channels": "[]",
            "approver_group": mine.pk,
            "required_approvals": 1,
            "expires_in_seconds": 3600,
            "allow_agent_owner": "on",
        },
    )
    assert page.status_code == 200 and "allow_agent_owner" in page.content.decode()  # the form error
    assert _routes() == before

    # What stays a route manager's: anything else, and taking the owners' vote away.
    assert (
        olivia.patch(
            "/api/v1/admin/routes/route_lenient", {"name": "Lenient", "expires_in_seconds": 600}
        ).status_code
        == 200
    )
    assert olivia.patch("/api/v1/admin/routes/route_lenient", {"allow_agent_owner": False}).status_code == 200
    assert (
        olivia.post(
            "/api/v1/admin/routes", {"route_id": "route_mine", "approver_group": "olivias-friends"}
        ).status_code
        == 201
    )

    api = AgentClient(key)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_mine").json()["approval_id"]
    assert olivia.post(f"/api/v1/approvals/{approval_id}/approve").status_code == 403


def test_moving_the_route_to_another_group_does_not_make_that_group_eligible(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    editors = Group.objects.create(name="route-editors")
    editor = make_staff("eddie", "approvals.manage_routes")
    editor.groups.add(editors)
    finance = make_staff("fiona", "approvals.view_approvalroute")
    finance.groups.add(group)
    make_route("route_finance", group=group)
    _, key = make_agent("bot")
    decision_id, approval_id = _pending(key)
    eddie = TokenClient(editor)
    assert eddie.patch(ROUTE, {"approver_group": "route-editors"}).status_code == 200
    trace_before = _trace(decision_id)

    # Not in the frozen group, so the approval is not even visible to him: not_found (issue 13).
    refused = eddie.post(f"/api/v1/approvals/{approval_id}/approve")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert _trace(decision_id) == trace_before
    assert Approval.objects.get(pk=approval_id).status == "pending"

    granted = TokenClient(finance).post(f"/api/v1/approvals/{approval_id}/approve")
    assert granted.status_code == 200 and granted.json()["status"] == "approved"


def test_giving_the_agent_away_after_the_request_does_not_let_its_former_owner_vote(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    owner = make_staff("olivia", "agents.manage_agents", "agents.view_agent")
    owner.groups.add(group)
    make_route("route_finance", group=group)
    agent, key = make_agent("owned-bot", owner=owner)
    decision_id, approval_id = _pending(key)
    olivia = TokenClient(owner)
    assert olivia.patch(f"/api/v1/admin/agents/{agent.agent_id}", {"owner": None}).status_code == 200
    trace_before = _trace(decision_id)

    vote = olivia.post(f"/api/v1/approvals/{approval_id}/approve")

    assert vote.status_code == 403 and "own the agent" in vote.json()["error"]["message"]
    assert _trace(decision_id) == trace_before


def test_tightening_the_route_later_does_not_change_a_pending_approvals_quorum_or_rationale(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    reviewer = make_staff("rita", "approvals.view_approvalroute")
    reviewer.groups.add(group)
    make_route("route_finance", group=group, required_approvals=1, require_rationale=False)
    _, key = make_agent("bot")
    _, approval_id = _pending(key)
    admin = TokenClient(make_staff("root", "approvals.manage_routes"))
    changed = admin.patch(
        ROUTE, {"required_approvals": 3, "require_rationale": True, "expires_in_seconds": 60}
    )
    assert changed.status_code == 200

    vote = TokenClient(reviewer).post(f"/api/v1/approvals/{approval_id}/approve")

    assert vote.status_code == 200, vote.content
    assert vote.json()["status"] == "approved"


def test_the_request_event_records_the_frozen_rules(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    owner = make_staff("olivia")
    make_route("route_finance", group=group, required_approvals=2, require_rationale=True)
    _, key = make_agent("owned-bot", owner=owner)
    decision_id, approval_id = _pending(key)

    event = TraceEvent.objects.get(decision_id=decision_id, type="approval_requested")

    assert event.payload["rules"] == {
        "approver_group": "finance-approvers",
        "required_approvals": 2,
        "require_rationale": True,
        "allow_agent_owner": False,
        "expires_in_seconds": 86400,
        "agent_owner": {"id": f"user_{owner.pk}", "name": "olivia"},
    }
    approval = Approval.objects.get(pk=approval_id)
    assert approval.approver_group_id == group.pk and approval.agent_owner_id == owner.pk


def test_the_review_page_shows_the_frozen_rules_and_refuses_the_owner_after_the_edit(
    make_agent: Callable[..., tuple[Agent, str]], group: Group
) -> None:
    owner = make_staff("olivia", "approvals.manage_routes", password="pw-olivia-1")
    owner.groups.add(group)
    make_route("route_finance", group=group, allow_agent_owner=False)
    _, key = make_agent("owned-bot", owner=owner)
    _, approval_id = _pending(key)
    assert TokenClient(_root()).patch(ROUTE, {"allow_agent_owner": True}).status_code == 200
    browser = Client()
    browser.force_login(owner)

    page = browser.get(f"/review/{approval_id}/").content.decode()
    assert "You own the agent that asked" in page
    assert '<dd id="rule-owner">may not approve (olivia)</dd>' in page
    posted = browser.post(f"/review/{approval_id}/vote/", {"decision": "approve", "rationale": "ok"})
    assert posted.status_code == 302
    assert Approval.objects.get(pk=approval_id).status == "pending"
    assert not Vote.objects.exists()


def test_the_email_goes_to_the_group_frozen_at_request_time(
    make_agent: Callable[..., tuple[Agent, str]], group: Group, mailoutbox: list[Any]
) -> None:
    frozen = make_staff("fiona")
    frozen.groups.add(group)
    later = Group.objects.create(name="later-group")
    newcomer = make_staff("nate")
    newcomer.groups.add(later)
    make_route("route_finance", group=group, channels=[{"type": "email"}])
    _, key = make_agent("bot")
    _, approval_id = _pending(key)
    admin = TokenClient(make_staff("root", "approvals.manage_routes"))
    assert admin.patch(ROUTE, {"approver_group": "later-group"}).status_code == 200

    for delivery in Delivery.objects.filter(approval_id=approval_id):
        approval_outbox.delivery_attempt(actor=Actor.system("worker"), delivery_id=delivery.delivery_id)

    assert [m.to for m in mailoutbox] == [["fiona@example.com"]]


def test_the_agents_owner_gets_no_email_link_when_the_frozen_rules_bar_them(
    make_agent: Callable[..., tuple[Agent, str]], group: Group, mailoutbox: list[Any]
) -> None:
    owner = make_staff("olivia")
    other = make_staff("fiona")
    for user in (owner, other):
        user.groups.add(group)
    make_route("route_finance", group=group, channels=[{"type": "email"}])
    _, key = make_agent("owned-bot", owner=owner)
    _, approval_id = _pending(key)

    for delivery in Delivery.objects.filter(approval_id=approval_id):
        approval_outbox.delivery_attempt(actor=Actor.system("worker"), delivery_id=delivery.delivery_id)

    assert [m.to for m in mailoutbox] == [["fiona@example.com"]]
