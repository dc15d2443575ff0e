"""Issue 18: every dashboard count is a link to a page listing exactly the items counted, and both
are scoped to what the viewer may see (recent policy denials, delivery failures)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from agents.models import Agent
from approvals.models import Approval, ApprovalRoute, Delivery, DeliveryStatus
from decisions import services as decision_services
from decisions.models import Decision
from policies.services import authoring as policy_authoring
from policies.services import evaluation as policy_evaluation
from tests.ui_scenario import SYSTEM, decision_needing_approval, make_reviewer, make_route
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db

DENY_POLICY: dict[str, Any] = {
    "name": "No refunds to blocked customers",
    "inputs_schema": {
        "type": "object",
        "properties": {"blocked": {"type": "boolean"}},
        "required": ["blocked"],
    },
    "rules": [
        {"name": "blocked", "when": "inputs.blocked", "outcome": "deny", "message": "customer is blocked"},
        {"name": "ok", "when": "!inputs.blocked", "outcome": "allow", "message": "fine"},
    ],
}


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _stat(body: str, stat_id: str) -> tuple[int, str]:
    """(value, link) of a dashboard stat tile."""
    head, tail = body.split(f'id="{stat_id}"', 1)
    href = head.rsplit('href="', 1)[1].split('"', 1)[0]
    return int(tail.split(">", 1)[1].split("<", 1)[0]), href.replace("&amp;", "&")


def _evaluated(agent: Agent, *, blocked: bool, intent: str = "customer.refund") -> Decision:
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(actor=actor, intent=intent, automation_mode="autonomous")
    result = policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id="deny_policy", inputs={"blocked": blocked}
    )
    assert result["outcome"] == ("deny" if blocked else "allow")
    return decision


def _failed_delivery(approval: Approval, n: int, *, status: str = DeliveryStatus.FAILED) -> Delivery:
    return Delivery.objects.create(
        delivery_id=f"whk_test_{approval.approval_id[-8:]}_{n}",
        approval=approval,
        channel="webhook",
        target={"type": "webhook", "endpoint": "ops"},
        status=status,
        attempts=5,
        last_error="receiver answered 503",
    )


@pytest.fixture
def scene(make_agent: Callable[..., tuple[Agent, str]]) -> dict[str, Any]:
    make_route()
    other_group = Group.objects.create(name="payout-reviewers")
    ApprovalRoute.objects.create(
        route_id="route_payouts", name="Payouts", channels=[], approver_group=other_group
    )
    agent, _ = make_agent("dash-agent")
    policy_authoring.policy_create(actor=SYSTEM, policy_id="deny_policy", definition=DENY_POLICY)
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="deny_policy")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="deny_policy", agent_id=agent.agent_id)
    denied = [_evaluated(agent, blocked=True), _evaluated(agent, blocked=True, intent="customer.payout")]
    # Denied 10 days ago (a decision's created_at never changes: the row is written as it was then).
    Decision.objects.create(
        agent=agent,
        intent="customer.old",
        automation_mode="autonomous",
        actor="dash-agent",
        created_at=timezone.now() - timedelta(days=10),
        last_deny_seq=2,
    )
    _evaluated(agent, blocked=False)  # allowed: not a denial

    _, refund = decision_needing_approval(agent)
    _, payout = decision_needing_approval(agent, intent="customer.payout")
    Approval.objects.filter(pk=payout.pk).update(
        route=ApprovalRoute.objects.get(route_id="route_payouts"), approver_group=other_group
    )
    failed = [_failed_delivery(refund, 1), _failed_delivery(refund, 2), _failed_delivery(payout, 1)]
    _failed_delivery(payout, 2, status=DeliveryStatus.DELIVERED)
    stale = _failed_delivery(refund, 3)
    Delivery.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(days=10))

    closed = _evaluated(agent, blocked=False, intent="customer.closed")
    decision_services.decision_close(
        actor=Actor.for_agent(agent), decision_id=closed.decision_id, action="abort", reason="done"
    )
    _, overdue = decision_needing_approval(agent, intent="customer.refund.late")
    Approval.objects.filter(pk=overdue.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    payout_reviewer = get_user_model().objects.create_user("paula", password="x")
    payout_reviewer.groups.add(other_group)  # no decisions.view_decision: sees no decision
    return {
        "denied": {d.decision_id for d in denied},
        "failed": {d.delivery_id for d in failed},
        "refund_failed": {d.delivery_id for d in failed[:2]},
        "payout_failed": {failed[2].delivery_id},
        "superuser": get_user_model().objects.create_superuser("root", "root@example.com", "x"),
        "refund_reviewer": make_reviewer("sam"),
        "payout_reviewer": payout_reviewer,
    }


def _linked_rows(client: Client, href: str, key: str) -> set[str]:
    page = client.get(href)
    assert page.status_code == 200, href
    if "page" in page.context and hasattr(page.context["page"], "paginator"):
        assert page.context["page"].paginator.count == len(page.context["page"].object_list)
        return {d.decision_id for d in page.context["page"].object_list}
    return {getattr(row, key) for row in page.context["rows"]}


@pytest.mark.parametrize(
    ("who", "denials", "failures"),
    [
        ("superuser", "denied", "failed"),
        ("refund_reviewer", "denied", "refund_failed"),
        ("payout_reviewer", None, "payout_failed"),
    ],
)
def test_denial_and_delivery_failure_counts_link_to_exactly_those_rows(
    scene: dict[str, Any], who: str, denials: str | None, failures: str
) -> None:
    client = _client(scene[who])
    body = client.get("/").content.decode()
    since = (timezone.now() - timedelta(days=6)).date().isoformat()

    count, href = _stat(body, "stat-denied")
    assert href == f"/decisions/?denied=yes&from={since}"
    expected = scene[denials] if denials else set()
    assert count == len(expected)
    assert _linked_rows(client, href, "decision_id") == expected

    count, href = _stat(body, "stat-delivery-failed")
    assert href == f"/review/deliveries/?status=failed&since={since}"
    assert count == len(scene[failures])
    assert _linked_rows(client, href, "delivery_id") == scene[failures]


def test_decision_explorer_filters_by_policy_denial(scene: dict[str, Any]) -> None:
    client = _client(scene["superuser"])
    denied = client.get("/decisions/", {"denied": "yes"})
    assert len(denied.context["page"].object_list) == 3  # the old one too, without a date
    not_denied = client.get("/decisions/", {"denied": "no"}).context["page"].object_list
    assert not any(d.last_deny_seq for d in not_denied) and len(not_denied) == 5
    assert 'name="denied"' in denied.content.decode()


def test_delivery_list_shows_channel_error_and_links_to_the_approval(scene: dict[str, Any]) -> None:
    client = _client(scene["superuser"])
    page = client.get("/review/deliveries/", {"status": "failed"})
    body = page.content.decode()
    row = page.context["rows"][0]
    assert "receiver answered 503" in body and "webhook" in body
    assert f'href="/review/{row.approval_id}/"' in body
    everything = client.get("/review/deliveries/")
    assert len(everything.context["rows"]) == 5  # any status, any age
    bad = client.get("/review/deliveries/", {"status": "exploded"})
    assert bad.status_code == 400 and "status" in bad.content.decode()
    stranger = get_user_model().objects.create_user("stranger", password="x")
    assert list(_client(stranger).get("/review/deliveries/").context["rows"]) == []


def _tiles(body: str) -> list[tuple[str, int, str]]:
    """(id, value, link) of every linked tile on the dashboard."""
    tiles = []
    for chunk in body.split('<a class="stat" href="')[1:]:
        href, rest = chunk.split('"', 1)
        stat_id = rest.split('id="', 1)[1].split('"', 1)[0]
        tiles.append((stat_id, int(rest.split(">", 2)[2].split("<", 1)[0]), href.replace("&amp;", "&")))
    return tiles


def _rows_on(client: Client, href: str) -> int:
    page = client.get(href)
    assert page.status_code == 200, href
    if "page" in page.context and hasattr(page.context["page"], "paginator"):
        return int(page.context["page"].paginator.count)
    return len(page.context["rows"])


@pytest.mark.parametrize("who", ["superuser", "refund_reviewer", "payout_reviewer"])
def test_every_dashboard_count_equals_the_rows_of_the_page_it_links_to(
    scene: dict[str, Any], who: str
) -> None:
    client = _client(scene[who])
    body = client.get("/").content.decode()
    tiles = _tiles(body)
    assert {t[0] for t in tiles} >= {
        "stat-open",
        "stat-pending",
        "stat-mine",
        "stat-approved",
        "stat-rejected",
        "stat-denied",
        "stat-delivery-failed",
        "stat-resolved",
    }
    for stat_id, value, href in tiles:
        assert value == _rows_on(client, href), (stat_id, href)
    # Every count on the dashboard is a link.
    assert body.count('class="value"') == len(tiles) + 1  # the median is a duration, not a count
