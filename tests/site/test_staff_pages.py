"""Routes and agents pages show admin data (channel destinations, agents, owners, keys): only to
people holding a permission of that area (issue 11: permissions, not ``is_staff``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from agents.models import Agent, AgentKey
from approvals.models import ApprovalRoute
from tests.perm_helpers import make_staff
from tests.ui_scenario import make_reviewer, make_route

pytestmark = pytest.mark.django_db

DESTINATION = "finance-lead@example.com"


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def route() -> ApprovalRoute:
    made = make_route()
    made.channels = [{"type": "email", "to": [DESTINATION]}, {"type": "slack", "channel": "C0SECRET1"}]
    made.save()
    return made


@pytest.mark.parametrize("path", ["/routes/", "/routes/route_refunds/"])
def test_a_reviewer_who_is_not_staff_cannot_see_routes(route: ApprovalRoute, path: str) -> None:
    response = _client(make_reviewer("rev1")).get(path)

    assert response.status_code == 403
    body = response.content.decode()
    assert (
        '<p class="alert alert-error" role="alert" id="refusal">you need the permission approvals.view_approvalroute'
        in body
    )
    assert DESTINATION not in body and "C0SECRET1" not in body


def test_a_reviewer_who_is_not_staff_cannot_see_agents(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    agent, _ = make_agent("billing-bot")
    client = _client(make_reviewer("rev1"))

    for path in ("/agents/", f"/agents/{agent.agent_id}/"):
        response = client.get(path)
        assert response.status_code == 403, path
        body = response.content.decode()
        assert "you need the permission agents.view_agent" in body
        assert "billing-bot" not in body


def test_a_non_staff_key_issue_is_refused_and_issues_nothing(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    agent, _ = make_agent("billing-bot")
    keys_before = list(AgentKey.objects.filter(agent=agent).values_list("pk", flat=True))

    response = _client(make_reviewer("rev1")).post(f"/agents/{agent.agent_id}/keys/", {"name": "sneaky"})

    assert response.status_code == 403
    assert list(AgentKey.objects.filter(agent=agent).values_list("pk", flat=True)) == keys_before


def test_the_menu_offers_agents_and_routes_to_staff_only(route: ApprovalRoute) -> None:
    reviewer_page = _client(make_reviewer("rev1")).get("/review/").content.decode()
    staff = make_staff("boss", "agents.view_agent", "approvals.view_approvalroute", password="x")
    staff_page = _client(staff).get("/review/").content.decode()

    assert 'href="/agents/"' not in reviewer_page and 'href="/routes/"' not in reviewer_page
    assert 'href="/agents/"' in staff_page and 'href="/routes/"' in staff_page


def test_staff_see_routes_with_their_channels_and_agents(
    route: ApprovalRoute, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    make_agent("billing-bot")
    staff = _client(make_staff("boss", "agents.view_agent", "approvals.view_approvalroute", password="x"))

    assert [r.route_id for r in staff.get("/routes/").context["routes"]] == ["route_refunds"]
    assert DESTINATION in staff.get("/routes/route_refunds/").content.decode()
    assert [a.name for a in staff.get("/agents/").context["agents"]] == ["billing-bot"]


def test_every_html_refusal_goes_through_one_mapping_with_the_rest_doors_status(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    """The HTML door's refusal mapping (tracemem_site.middleware.RefusalPageMiddleware): what a
    selector refuses is a page with the status the REST door gives: 404 for not_found, 403 (and the
    refusal's message) for permission_denied."""
    admin = _client(make_staff("pages-admin", "agents.view_agent", "decisions.view_decision"))
    reviewer = _client(make_reviewer("rev1"))
    agent, _ = make_agent("billing-bot")

    assert admin.get(f"/agents/{agent.agent_id}/").status_code == 200
    for path in ("/agents/agt_doesnotexist/", "/decisions/TMEM_01J00000000000000000000000/"):
        response = admin.get(path)
        assert response.status_code == 404, path
    refused = reviewer.get(f"/agents/{agent.agent_id}/")
    assert refused.status_code == 403
    assert "<h1>Not allowed</h1>" in refused.content.decode()
