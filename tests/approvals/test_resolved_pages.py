"""Issue 18 (reviewers): resolved approvals view and the decision page's approvals card, through the
Django test client (the browser test in tests/site/test_browser_flow.py shows the same pages in Chromium)."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from agents.models import Agent
from approvals.models import Approval
from approvals.services import requests as approval_requests
from decisions import services as decision_services
from tests.perm_helpers import make_staff
from tests.ui_scenario import decision_needing_approval, make_reviewer, make_route
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db

WHY = "Long-standing customer; within the goodwill budget."


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _vote(user: Any, approval: Approval, choice: str, rationale: str = "") -> None:
    approval_requests.approval_vote(
        actor=Actor.for_user(user),
        approval_id=approval.approval_id,
        decision=choice,
        rationale=rationale,
        channel="web",
    )


def test_resolved_view_lists_outcome_voter_and_rationale_newest_first(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("resolved-agent")
    _, approved = decision_needing_approval(agent, intent="customer.refund")
    _vote(rita, approved, "approve", WHY)
    _, rejected = decision_needing_approval(agent, intent="customer.refund.big")
    _vote(rita, rejected, "reject", "Too large for goodwill.")
    _, pending = decision_needing_approval(agent, intent="customer.refund.open")

    client = _client(make_reviewer("sam"))
    page = client.get("/review/resolved/")
    assert page.status_code == 200
    ids = [row.approval_id for row in page.context["rows"]]
    assert ids == [rejected.approval_id, approved.approval_id]  # newest resolution first
    body = page.content.decode()
    assert WHY in body and "Too large for goodwill." in body and "rita" in body
    assert f'href="/review/{approved.approval_id}/"' in body
    assert f'href="/decisions/{approved.decision_id}/"' in body
    assert pending.approval_id not in body

    only_rejected = client.get("/review/resolved/", {"outcome": "rejected"})
    assert [r.approval_id for r in only_rejected.context["rows"]] == [rejected.approval_id]
    by_reviewer = client.get("/review/resolved/", {"reviewer": "nobody"})
    assert list(by_reviewer.context["rows"]) == []
    by_agent = client.get("/review/resolved/", {"agent": agent.agent_id, "route": "route_refunds"})
    assert len(by_agent.context["rows"]) == 2


def test_resolved_view_includes_expired_and_cancelled(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    make_route()
    agent, _ = make_agent("expiry-agent")
    _, overdue = decision_needing_approval(agent)
    # Past its deadline it is expired as reported, before the tick writes it.
    Approval.objects.filter(pk=overdue.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    decision, cancelled = decision_needing_approval(agent, intent="customer.refund.cancel")
    decision_services.decision_close(
        actor=Actor.for_agent(agent), decision_id=decision.decision_id, action="abort", reason="gave up"
    )
    page = _client(make_reviewer("sam")).get("/review/resolved/")
    statuses = {row.approval_id: row.status for row in page.context["rows"]}
    assert statuses == {overdue.approval_id: "expired", cancelled.approval_id: "cancelled"}
    expired_only = _client(make_reviewer("tom")).get("/review/resolved/", {"outcome": "expired"})
    assert [r.approval_id for r in expired_only.context["rows"]] == [overdue.approval_id]


def test_resolved_view_is_scoped_like_the_queue(make_agent: Callable[..., tuple[Agent, str]]) -> None:
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("scope-agent")
    _, approval = decision_needing_approval(agent)
    _vote(rita, approval, "approve", WHY)
    stranger = get_user_model().objects.create_user("stranger", password="x")
    body = _client(stranger).get("/review/resolved/").content.decode()
    assert approval.approval_id not in body and WHY not in body
    auditor = make_staff("auditor", "approvals.view_approval", password="x")
    assert approval.approval_id in _client(auditor).get("/review/resolved/").content.decode()


def test_resolved_view_bad_filter_is_a_clear_400(make_agent: Any) -> None:
    make_route()
    page = _client(make_reviewer("rita")).get("/review/resolved/", {"outcome": "maybe"})
    assert page.status_code == 400
    assert "outcome" in page.content.decode()
    bad_date = _client(make_reviewer("sam")).get("/review/resolved/", {"since": "yesterday"})
    assert bad_date.status_code == 400 and "since" in bad_date.content.decode()


def test_queue_links_to_the_resolved_view(make_agent: Any) -> None:
    make_route()
    body = _client(make_reviewer("rita")).get("/review/").content.decode()
    assert 'href="/review/resolved/"' in body
    assert 'href="/review/deliveries/?status=failed"' in body


def test_decision_page_shows_approvals_card_after_resolution(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("card-agent")
    decision, approval = decision_needing_approval(agent)
    _vote(rita, approval, "approve", WHY)
    page = _client(make_reviewer("sam")).get(f"/decisions/{decision.decision_id}/")
    body = page.content.decode()
    assert 'id="approvals-card"' in body
    card = body.split('id="approvals-card"', 1)[1].split("</section>", 1)[0]
    assert "approved" in card and "route_refunds" in card and "rita" in card and WHY in card
    assert f'href="/review/{approval.approval_id}/"' in card
    assert "approve" in card and "web" in card
    assert approval.votes.get().created_at.strftime("%Y-%m-%d %H:%M") in card


def test_decision_page_hides_approvals_from_who_may_not_see_them(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("hidden-agent")
    decision, approval = decision_needing_approval(agent)
    _vote(rita, approval, "approve", WHY)
    viewer = make_staff("viewer", "decisions.view_decision", password="x")
    body = _client(viewer).get(f"/decisions/{decision.decision_id}/").content.decode()
    assert WHY not in body.split("Timeline", 1)[0]
    assert 'id="approvals-card"' not in body


def _stat(body: str, stat_id: str) -> tuple[str, str]:
    """(value, link) of a dashboard stat tile."""
    head, tail = body.split(f'id="{stat_id}"', 1)
    href = head.rsplit('href="', 1)[1].split('"', 1)[0]
    return tail.split(">", 1)[1].split("<", 1)[0], href.replace("&amp;", "&")


def test_dashboard_shows_work_for_this_reviewer_and_recent_approvals_as_links(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    rita = make_reviewer("rita")
    owner = make_reviewer("olga")
    agent, _ = make_agent("dash-agent", owner=owner)
    _, approved = decision_needing_approval(agent)
    _vote(rita, approved, "approve", WHY)
    _, rejected = decision_needing_approval(agent, intent="customer.refund.big")
    _vote(rita, rejected, "reject", "no")
    decision_needing_approval(agent, intent="customer.refund.open")

    body = _client(make_reviewer("sam")).get("/").content.decode()
    since = (timezone.now() - timedelta(days=6)).date().isoformat()
    assert _stat(body, "stat-mine") == ("1", "/review/?mine=1")
    assert _stat(body, "stat-approved") == ("1", f"/review/resolved/?outcome=approved&since={since}")
    assert _stat(body, "stat-rejected") == ("1", f"/review/resolved/?outcome=rejected&since={since}")
    # The agent's owner may not vote on it: nothing waits for them.
    assert _stat(_client(owner).get("/").content.decode(), "stat-mine")[0] == "0"


def test_decision_timeline_reads_as_lines_with_the_json_one_click_away(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("timeline-agent")
    decision, approval = decision_needing_approval(agent)
    _vote(rita, approval, "approve", WHY)
    decision_services.decision_add_context(
        actor=Actor.for_agent(agent),
        decision_id=decision.decision_id,
        context={"why": "x"},
        summary="Checked CRM",
    )
    decision_services.decision_close(
        actor=Actor.for_agent(agent), decision_id=decision.decision_id, action="commit", summary="Refunded"
    )
    body = _client(make_reviewer("sam")).get(f"/decisions/{decision.decision_id}/").content.decode()
    timeline = body.split('class="timeline"', 1)[1]
    lines = [
        html.unescape(chunk.split("</p>", 1)[0]) for chunk in timeline.split('<p class="event-line">')[1:]
    ]
    assert lines[0] == "Decision opened: customer.refund (autonomous)"
    assert (
        "Policy refund_policy: requires_exception (rule large_needs_human) — refunds of 100 or more need a human"
        in lines
    )
    assert "Approval requested on route route_refunds: Refund 250 EUR" in lines
    assert f"rita voted approve via web: {WHY}" in lines
    assert "Approval approved" in " ".join(lines)
    assert "Context: Checked CRM" in lines
    assert lines[-1] == "Closed: committed — Refunded"
    assert "<details" in timeline  # the raw JSON is one click away


def test_approval_page_timeline_is_readable_and_does_not_repeat_the_policy_json(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    make_route()
    agent, _ = make_agent("review-timeline-agent")
    _, approval = decision_needing_approval(agent)
    body = _client(make_reviewer("sam")).get(f"/review/{approval.approval_id}/").content.decode()
    timeline = body.split('id="trace-title"', 1)[1]
    assert "Approval requested on route route_refunds: Refund 250 EUR" in html.unescape(timeline)
    assert "Policy refund_policy: requires_exception (rule large_needs_human)" in html.unescape(timeline)
    # The evaluation's JSON is on the policy card above, once.
    assert body.count("&quot;large_needs_human&quot;") == 1
    assert "<details" in timeline


def test_each_resolved_view_filter_narrows_to_exactly_the_matching_rows(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    """Every filter of the resolved view (route, agent, reviewer, since, until) keeps the rows that
    match and drops the others: each value here matches one row of three, so a filter that were
    ignored would show all three."""
    from approvals.models import ApprovalRoute

    route = make_route()
    rita, victor = make_reviewer("rita"), make_reviewer("victor")
    first_agent, _ = make_agent("filter-agent-one")
    second_agent, _ = make_agent("filter-agent-two")
    _, a = decision_needing_approval(first_agent, intent="customer.refund.a")
    _vote(rita, a, "approve", "a")
    _, b = decision_needing_approval(second_agent, intent="customer.refund.b")
    _vote(victor, b, "approve", "b")
    _, c = decision_needing_approval(first_agent, intent="customer.refund.c")
    _vote(victor, c, "reject", "c")
    other_route = ApprovalRoute.objects.create(
        route_id="route_other", name="Other", approver_group=route.approver_group
    )
    Approval.objects.filter(pk=c.pk).update(route=other_route)
    long_ago = timezone.now() - timedelta(days=30)
    Approval.objects.filter(pk=a.pk).update(resolved_at=long_ago)

    client = _client(make_reviewer("sam"))

    def ids(**params: str) -> set[str]:
        page = client.get("/review/resolved/", params)
        assert page.status_code == 200, page.content
        return {row.approval_id for row in page.context["rows"]}

    assert ids() == {a.approval_id, b.approval_id, c.approval_id}
    assert ids(route="route_other") == {c.approval_id}
    assert ids(route="route_refunds") == {a.approval_id, b.approval_id}
    assert ids(agent=second_agent.agent_id) == {b.approval_id}
    assert ids(reviewer="rita") == {a.approval_id}
    assert ids(reviewer="victor") == {b.approval_id, c.approval_id}
    recent = (timezone.now() - timedelta(days=7)).date().isoformat()
    assert ids(since=recent) == {b.approval_id, c.approval_id}
    assert ids(until=(long_ago + timedelta(days=1)).date().isoformat()) == {a.approval_id}
    assert ids(outcome="approved", reviewer="victor") == {b.approval_id}


def test_resolved_approval_and_its_decision_link_to_each_other(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    """Issue 18 (audit): links both ways stay after resolution: the approval page links to its
    decision, and the decision page links back to the approval."""
    make_route()
    rita = make_reviewer("rita")
    agent, _ = make_agent("both-ways-agent")
    decision, approval = decision_needing_approval(agent)
    _vote(rita, approval, "reject", "no")
    client = _client(make_reviewer("sam"))
    approval_page = client.get(f"/review/{approval.approval_id}/").content.decode()
    assert f'href="/decisions/{decision.decision_id}/"' in approval_page
    decision_page = client.get(f"/decisions/{decision.decision_id}/").content.decode()
    assert f'href="/review/{approval.approval_id}/"' in decision_page


def test_approvals_card_shows_each_channel_delivery_and_its_outcome(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    """Issue 18 (audit): the approvals card names each delivery's channel and whether it arrived."""
    from approvals.models import Delivery

    make_route()
    agent, _ = make_agent("delivery-card-agent")
    decision, approval = decision_needing_approval(agent)
    for n, (channel, status) in enumerate((("email", "delivered"), ("webhook", "failed"))):
        Delivery.objects.create(
            delivery_id=f"dlv_card_{n}", approval=approval, channel=channel, status=status, attempts=n + 1
        )
    _vote(make_reviewer("rita"), approval, "approve", WHY)
    body = _client(make_reviewer("sam")).get(f"/decisions/{decision.decision_id}/").content.decode()
    card = body.split('id="approvals-card"', 1)[1].split("</section>", 1)[0]
    deliveries = html.unescape(card.split('class="muted deliveries"', 1)[1].split("</p>", 1)[0])
    assert "email" in deliveries and "delivered" in deliveries
    assert "webhook" in deliveries and "failed" in deliveries
